-- q1 as a batch query.
SELECT auction, bidder, 0.908 * price AS price, date_time, extra
FROM bid
