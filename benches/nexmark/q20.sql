-- Nexmark q20: expand bid with auction. The bids on auctions of category
-- 10, each with its auction's columns: a join of two streams.
-- Differs from the standard text: the standard join has no time bound,
-- which DataFibers refuses (its state would keep every bid and auction
-- forever). Here it is an interval join: the auction opened at most 10 s
-- before the bid and at most 1 s after it (the generator draws a bid's
-- auction from the last 100 auctions, about 0.17 s of events at 10,000
-- events/s, or up to 10 auctions ahead, about 17 ms). Columns that both
-- sides have are renamed bid_... and auction_... .
SELECT b.auction, b.bidder, b.price, b.channel, b.url, b.date_time AS bid_date_time,
       b.extra AS bid_extra, a.item_name, a.description, a.initial_bid, a.reserve,
       a.date_time AS auction_date_time, a.expires, a.seller, a.category,
       a.extra AS auction_extra
FROM bid AS b
JOIN auction AS a
  ON b.auction = a.id
 AND a.date_time BETWEEN b.date_time - INTERVAL '10' SECOND AND b.date_time + INTERVAL '1' SECOND
WHERE a.category = 10
