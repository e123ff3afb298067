-- 20260301130000_rename_email: contract (the last deploy), for the application's own schema
-- migration. Run it only once every application reads and writes email_address
-- alone, and after the gate passed:
--   enqueue wait 20260301130000 && enqueue verify 20260301130000
-- (the backfill completed, and every row's email_address agrees with email).
-- Run it in one transaction, as most migration tools do: the trigger and
-- email must go together, or a write between the two could fail.

DROP TRIGGER "accounts_email_address_sync" ON "public"."accounts";
DROP FUNCTION "public"."accounts_email_address_sync"();

-- "email" was NOT NULL; so becomes "email_address", without a long lock: the check is
-- validated while writes go on, and SET NOT NULL then uses it. Rows whose
-- value did not survive a type change (on_loss: null) have NULL copies: the
-- validation then fails and rolls this back; fix those rows first.
ALTER TABLE "public"."accounts" ADD CONSTRAINT "accounts_email_address_not_null" CHECK ("email_address" IS NOT NULL) NOT VALID;
ALTER TABLE "public"."accounts" VALIDATE CONSTRAINT "accounts_email_address_not_null";
ALTER TABLE "public"."accounts" ALTER COLUMN "email_address" SET NOT NULL;
ALTER TABLE "public"."accounts" DROP CONSTRAINT "accounts_email_address_not_null";

ALTER TABLE "public"."accounts" DROP COLUMN "email";
