-- Nexmark q7 in Flink SQL: the rows of benches/nexmark/q7.sql, the bids
-- with the highest price of each 10 s window. A window join in Flink
-- matches both bounds of the window.
SELECT b.auction, b.price, b.bidder, b.date_time, b.extra
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) AS b
JOIN (
  SELECT window_start, window_end, max(price) AS maxprice
  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY window_start, window_end
) AS m
  ON b.window_start = m.window_start AND b.window_end = m.window_end
  AND b.price = m.maxprice
