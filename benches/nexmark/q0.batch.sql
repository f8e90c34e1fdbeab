-- q0 as a batch query.
SELECT auction, bidder, price, date_time, extra
FROM bid
