-- Nexmark q5 in Flink SQL: the rows of benches/nexmark/q5.sql, the auctions
-- with the most bids in each 10 s window sliding by 2 s, ties all kept.
-- Flink's window Top-N takes ROW_NUMBER only, not RANK, so this is the
-- standard text's form: the counts joined to their window's maximum (a
-- cascaded window aggregate, then a window join), with the window's bounds
-- returned as DataFibers returns them.
SELECT b.auction, b.num, b.window_start, b.window_end
FROM (
  SELECT auction, count(*) AS num, window_start, window_end
  FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
  GROUP BY auction, window_start, window_end
) AS b
JOIN (
  SELECT max(num) AS maxn, window_start, window_end
  FROM (
    SELECT auction, count(*) AS num, window_start, window_end
    FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
    GROUP BY auction, window_start, window_end
  )
  GROUP BY window_start, window_end
) AS m
  ON b.window_start = m.window_start AND b.window_end = m.window_end AND b.num >= m.maxn
