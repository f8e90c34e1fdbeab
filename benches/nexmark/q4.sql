-- Nexmark q4: average price for a category. The closing price of an
-- auction is its highest bid between its opening and its expiry, and q4
-- averages the closing prices of each category.
-- Differs from the standard text: the standard query is an updating
-- aggregate over an unbounded join of auctions and bids, which DataFibers
-- refuses (its state would grow forever). Here both sides are read through
-- the same 10 s TUMBLE window and joined on it, so an auction closes with
-- the bids of its own window, and the average is per category and window.
SELECT category, window_start, window_end, avg(final) AS avg_price
FROM (
  SELECT a.window_start, a.window_end, a.id, a.category, max(b.price) AS final
  FROM TUMBLE(auction, date_time, INTERVAL '10' SECOND) AS a
  JOIN TUMBLE(bid, date_time, INTERVAL '10' SECOND) AS b
    ON a.id = b.auction AND a.window_start = b.window_start
  WHERE b.date_time BETWEEN a.date_time AND a.expires
  GROUP BY a.window_start, a.window_end, a.id, a.category
)
GROUP BY category, window_start, window_end
