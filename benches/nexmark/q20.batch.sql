-- q20 as a batch query: the same interval join.
SELECT b.auction, b.bidder, b.price, b.channel, b.url, b.date_time AS bid_date_time,
       b.extra AS bid_extra, a.item_name, a.description, a.initial_bid, a.reserve,
       a.date_time AS auction_date_time, a.expires, a.seller, a.category,
       a.extra AS auction_extra
FROM bid AS b
JOIN auction AS a
  ON b.auction = a.id
 AND a.date_time BETWEEN b.date_time - INTERVAL '10' SECOND AND b.date_time + INTERVAL '1' SECOND
WHERE a.category = 10
