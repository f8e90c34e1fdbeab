-- Nexmark q8 in Flink SQL, the standard text: the people who registered
-- and opened an auction in the same 10 s window, as a window join of two
-- windowed GROUP BYs (benches/nexmark/q8.sql gives the same rows with one
-- GROUP BY after the join).
SELECT p.id, p.name, p.starttime
FROM (
  SELECT id, name, window_start AS starttime, window_end AS endtime
  FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY id, name, window_start, window_end
) AS p
JOIN (
  SELECT seller, window_start AS starttime, window_end AS endtime
  FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY seller, window_start, window_end
) AS a
  ON p.id = a.seller AND p.starttime = a.starttime AND p.endtime = a.endtime
