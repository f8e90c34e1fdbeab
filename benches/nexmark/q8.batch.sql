-- q8 as a batch query: 10 s windows by date_bin.
SELECT DISTINCT p.id, p.name, p.window_start AS starttime
FROM (SELECT *, date_bin(INTERVAL '10' SECOND, date_time, TIMESTAMP '1970-01-01') AS window_start
      FROM person) AS p
JOIN (SELECT *, date_bin(INTERVAL '10' SECOND, date_time, TIMESTAMP '1970-01-01') AS window_start
      FROM auction) AS a
  ON p.id = a.seller AND p.window_start = a.window_start
