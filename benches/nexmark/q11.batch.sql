-- q11 as a batch query: a bid opens a new session of its bidder when it
-- comes 10 s or more after the bidder's previous bid, and a session runs from
-- its first bid to its last bid + 10 s.
SELECT bidder, count(*) AS bid_count, min(date_time) AS window_start,
       max(date_time) + INTERVAL '10' SECOND AS window_end
FROM (
  SELECT bidder, date_time,
         sum(opens) OVER (PARTITION BY bidder ORDER BY date_time
                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session
  FROM (
    SELECT bidder, date_time,
           CASE WHEN date_time - lag(date_time) OVER (PARTITION BY bidder ORDER BY date_time)
                     < INTERVAL '10' SECOND
                THEN 0 ELSE 1 END AS opens
    FROM bid
  )
)
GROUP BY bidder, session
