-- 20260301130000_rename_email: copy public.accounts.email into email_address (a rename: the same type).
-- Written by "enqueue new rename_email --copy-column public.accounts.email:email_address", with
-- 20260301130000_rename_email.expand.sql and 20260301130000_rename_email.contract.sql.
--
-- Deploy 1 runs the expand file: the column, and the trigger that keeps it in
-- step from then on. This backfill copies the rows written before it; "enqueue pending" enqueues it after deploy 1.
-- Batches take only the rows not copied yet (the trigger keeps every copy
-- it writes in step), so a second pass is cheap, and "enqueue verify 20260301130000"
-- checks every row before the contract step.
-- table: public.accounts
-- key: id
-- where: "email_address" IS NULL AND "email" IS NOT NULL
-- verify: "email_address" IS NOT DISTINCT FROM "email"
UPDATE "public"."accounts"
SET "email_address" = "email"
WHERE "id" BETWEEN @first AND @last AND "email_address" IS NULL AND "email" IS NOT NULL AND "email_address" IS DISTINCT FROM "email";
