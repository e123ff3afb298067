-- 20260301130000_rename_email: expand (deploy 1), for the application's own schema migration.
-- Written by "enqueue new rename_email --copy-column public.accounts.email:email_address".
--
-- It adds public.accounts.email_address and a trigger that keeps it in step with email on every
-- insert and update, whichever application writes: dual writes begin in the
-- database itself, from this migration on. The steps, each its own deploy:
--   1. this file; then "enqueue pending" copies the rows written before it
--      (20260301130000_rename_email.sql, the backfill)
--   2. switch the application to read and write email_address; the trigger keeps
--      email in step for code that still uses it
--   3. gate: enqueue wait 20260301130000 && enqueue verify 20260301130000
--   4. 20260301130000_rename_email.contract.sql: drop the trigger, then email
--
-- Adding a column takes a brief ACCESS EXCLUSIVE lock on the table: run this
-- with a lock_timeout (SET lock_timeout = '5s') and retry rather than queue
-- the application behind it.

ALTER TABLE "public"."accounts" ADD COLUMN "email_address" text;

-- Keeps the two columns in step. An insert that gives only one of them gets
-- the other; an update that changes only one changes the other to match
-- (unless it already matches, as after the backfill's own update), and any
-- other update of a row not copied yet copies it.
CREATE FUNCTION "public"."accounts_email_address_sync"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		IF NEW."email_address" IS NULL THEN
			NEW."email_address" := NEW."email";
		ELSIF NEW."email" IS NULL THEN
			NEW."email" := NEW."email_address";
		END IF;
	ELSIF NEW."email" IS DISTINCT FROM OLD."email" AND NEW."email_address" IS NOT DISTINCT FROM OLD."email_address" THEN
		NEW."email_address" := NEW."email";
	ELSIF NEW."email_address" IS DISTINCT FROM OLD."email_address" AND NEW."email" IS NOT DISTINCT FROM OLD."email"
		AND NEW."email_address" IS DISTINCT FROM NEW."email" THEN
		NEW."email" := NEW."email_address";
	ELSIF NEW."email_address" IS NULL THEN
		NEW."email_address" := NEW."email"; -- a row from before the expand, updated otherwise
	END IF;
	RETURN NEW;
END $$;

CREATE TRIGGER "accounts_email_address_sync" BEFORE INSERT OR UPDATE ON "public"."accounts"
FOR EACH ROW EXECUTE FUNCTION "public"."accounts_email_address_sync"();
