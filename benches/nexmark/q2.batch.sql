-- q2 as a batch query.
SELECT auction, price
FROM bid
WHERE auction % 123 = 0
