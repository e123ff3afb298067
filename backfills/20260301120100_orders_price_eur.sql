-- Seed example 2: fill the new column price_eur_cents from price_cents at a
-- fixed rate of 0.92 (integer cents, rounded down).
--
-- Automatic. The "price_eur_cents IS NULL" condition keeps the statement from
-- overwriting a price the application has written since the deploy. It has
-- no down statement: the column is simply dropped if the change is undone.
-- table: orders
-- key: id
-- batch: 5000
UPDATE orders SET price_eur_cents = price_cents * 92 / 100
WHERE id BETWEEN @first AND @last AND price_eur_cents IS NULL;
