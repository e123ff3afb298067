-- Seed example 1: rename the user status 'enabled' to 'active'.
--
-- Automatic, so "enqueue pending" runs it after the deploy that reads both
-- names. Revert with "enqueue revert 20260301120000".
--
-- The where filter cuts batches only from users that still need the change;
-- the revert cuts its batches with down_where instead, from the users the
-- change made 'active'. Each statement repeats its condition, because rows
-- can change between cutting a batch and running it.
-- table: users
-- key: id
-- batch: 1000
-- where: status = 'enabled'
-- down_where: status = 'active'
UPDATE users SET status = 'active'
WHERE id BETWEEN @first AND @last AND status = 'enabled';

-- down
UPDATE users SET status = 'enabled'
WHERE id BETWEEN @first AND @last AND status = 'active';
