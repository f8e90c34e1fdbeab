-- Nexmark q5: hot items. The auctions with the most bids in each 10 s
-- window sliding by 2 s: a HOP window aggregate, then the Top-1 of each
-- window (RANK, so tied auctions are all kept).
-- Differs from the standard text, which finds the maximum count with a
-- second aggregate joined back to the counts. DataFibers writes Top-N as a
-- ranking over the windowed aggregate, which computes the same rows. The
-- window's bounds are returned too, as they tell the rows apart.
SELECT auction, num, window_start, window_end
FROM (
  SELECT auction, num, window_start, window_end,
         RANK() OVER (PARTITION BY window_start ORDER BY num DESC) AS rank
  FROM (
    SELECT auction, count(*) AS num, window_start, window_end
    FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
    GROUP BY auction, window_start, window_end
  )
)
WHERE rank = 1
