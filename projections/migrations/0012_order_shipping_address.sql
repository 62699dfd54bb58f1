-- Orders record where they go (`OrderPlaced.shipping_address`, absent in orders placed
-- before addresses were recorded). Version 2 of the orders projection fills it, so a
-- rebuild brings it to every existing order.
ALTER TABLE orders.orders ADD COLUMN shipping_address jsonb;
