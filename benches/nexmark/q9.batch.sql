-- q9 as a batch query: 10 s windows by date_bin.
SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller, category,
       auction, bidder, price, bid_date_time
FROM (
  SELECT a.id, a.item_name, a.description, a.initial_bid, a.reserve, a.date_time, a.expires,
         a.seller, a.category, b.auction, b.bidder, b.price, b.date_time AS bid_date_time,
         ROW_NUMBER() OVER (PARTITION BY a.window_start, a.id
                            ORDER BY b.price DESC, b.date_time ASC) AS rownum
  FROM (SELECT *, date_bin(INTERVAL '10' SECOND, date_time, TIMESTAMP '1970-01-01') AS window_start
        FROM auction) AS a
  JOIN (SELECT *, date_bin(INTERVAL '10' SECOND, date_time, TIMESTAMP '1970-01-01') AS window_start
        FROM bid) AS b
    ON a.id = b.auction AND a.window_start = b.window_start
  WHERE b.date_time BETWEEN a.date_time AND a.expires
)
WHERE rownum = 1
