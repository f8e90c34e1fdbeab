-- q5 as a batch query: each bid expanded into the 5 windows (10 s / 2 s)
-- that hold it.
SELECT auction, num, window_start, window_end
FROM (
  SELECT auction, num, window_start, window_end,
         RANK() OVER (PARTITION BY window_start ORDER BY num DESC) AS rank
  FROM (
    SELECT auction, count(*) AS num, window_start, window_start + INTERVAL '10' SECOND AS window_end
    FROM (
      SELECT b.auction,
             date_bin(INTERVAL '2' SECOND, b.date_time, TIMESTAMP '1970-01-01') - o.back AS window_start
      FROM bid AS b
      CROSS JOIN (VALUES (INTERVAL '0' SECOND), (INTERVAL '2' SECOND), (INTERVAL '4' SECOND),
                         (INTERVAL '6' SECOND), (INTERVAL '8' SECOND)) AS o(back)
    )
    GROUP BY auction, window_start
  )
)
WHERE rank = 1
