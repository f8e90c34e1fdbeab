-- q4 as a batch query: 10 s windows by date_bin.
SELECT category, window_start, window_end, avg(final) AS avg_price
FROM (
  SELECT a.window_start, a.window_start + INTERVAL '10' SECOND AS window_end, a.id, a.category,
         max(b.price) AS final
  FROM (SELECT *, date_bin(INTERVAL '10' SECOND, date_time, TIMESTAMP '1970-01-01') AS window_start
        FROM auction) AS a
  JOIN (SELECT *, date_bin(INTERVAL '10' SECOND, date_time, TIMESTAMP '1970-01-01') AS window_start
        FROM bid) AS b
    ON a.id = b.auction AND a.window_start = b.window_start
  WHERE b.date_time BETWEEN a.date_time AND a.expires
  GROUP BY a.window_start, a.id, a.category
)
GROUP BY category, window_start, window_end
