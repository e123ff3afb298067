package batches

// ApplyMigration lets the external tests run a migration of their own.
var ApplyMigration = applyMigration
