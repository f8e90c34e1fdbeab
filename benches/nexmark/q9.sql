-- Nexmark q9: winning bids. Each auction with its winning bid: the highest
-- bid between its opening and its expiry (the earliest of equal bids).
-- Differs from the standard text: the standard ranks the bids of an
-- unbounded join of auctions and bids, which DataFibers refuses (its state
-- would grow forever). Here both sides are read through the same 10 s
-- TUMBLE window and joined on it, as in q4, and the ranking is per window
-- and auction.
SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller, category,
       auction, bidder, price, bid_date_time
FROM (
  SELECT a.id, a.item_name, a.description, a.initial_bid, a.reserve, a.date_time, a.expires,
         a.seller, a.category, b.auction, b.bidder, b.price, b.date_time AS bid_date_time,
         ROW_NUMBER() OVER (PARTITION BY a.window_start, a.id
                            ORDER BY b.price DESC, b.date_time ASC) AS rownum
  FROM TUMBLE(auction, date_time, INTERVAL '10' SECOND) AS a
  JOIN TUMBLE(bid, date_time, INTERVAL '10' SECOND) AS b
    ON a.id = b.auction AND a.window_start = b.window_start
  WHERE b.date_time BETWEEN a.date_time AND a.expires
)
WHERE rownum = 1
