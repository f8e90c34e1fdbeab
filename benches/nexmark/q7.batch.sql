-- q7 as a batch query: 10 s windows by date_bin.
SELECT b.auction, b.price, b.bidder, b.date_time, b.extra
FROM (SELECT *, date_bin(INTERVAL '10' SECOND, date_time, TIMESTAMP '1970-01-01') AS window_start
      FROM bid) AS b
JOIN (
  SELECT date_bin(INTERVAL '10' SECOND, date_time, TIMESTAMP '1970-01-01') AS window_start,
         max(price) AS maxprice
  FROM bid
  GROUP BY 1
) AS m
  ON b.window_start = m.window_start AND b.price = m.maxprice
