-- Nexmark q7: highest bid. The bids with the highest price of each 10 s
-- TUMBLE window: a windowed aggregate joined back to the bids of its
-- window.
-- Differs from the standard text only in form: the standard joins the
-- aggregate to the raw bid stream with a time condition (date_time within
-- the window). Here both sides are read through the same TUMBLE and joined
-- on window_start, which is how DataFibers bounds the join's state.
SELECT b.auction, b.price, b.bidder, b.date_time, b.extra
FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) AS b
JOIN (
  SELECT window_start, max(price) AS maxprice
  FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND)
  GROUP BY window_start, window_end
) AS m
  ON b.window_start = m.window_start AND b.price = m.maxprice
