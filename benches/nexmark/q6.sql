-- Nexmark q6: average selling price by seller. For each auction that
-- closes, the average closing price of its seller's last 10 auctions
-- (closing price as in q4).
-- Differs from the standard text: the standard is an OVER window per seller
-- over an unbounded join of auctions and bids, which DataFibers refuses
-- (its state would grow forever). Here the closing prices come from a join
-- over the same 10 s TUMBLE window, as in q4, and the average covers the
-- seller's auctions of that window up to this one, the last 11 at most
-- (ROWS BETWEEN 10 PRECEDING AND CURRENT ROW, as in the standard text):
-- a continuous query sees one window's rows at a time, so the OVER window
-- is partitioned by window_start. The auction id and the window are
-- returned too, as they tell the rows apart.
SELECT seller, id, window_start,
       avg(final) OVER (PARTITION BY window_start, seller ORDER BY date_time
                        ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS avg_price
FROM (
  SELECT a.window_start, a.window_end, a.id, a.seller, a.date_time, max(b.price) AS final
  FROM TUMBLE(auction, date_time, INTERVAL '10' SECOND) AS a
  JOIN TUMBLE(bid, date_time, INTERVAL '10' SECOND) AS b
    ON a.id = b.auction AND a.window_start = b.window_start
  WHERE b.date_time BETWEEN a.date_time AND a.expires
  GROUP BY a.window_start, a.window_end, a.id, a.seller, a.date_time
)
