-- Nexmark q2: selection. The bids on every 123rd auction: a stateless
-- filter.
-- Standard.
SELECT auction, price
FROM bid
WHERE auction % 123 = 0
