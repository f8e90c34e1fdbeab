-- The DataFibers stock example: a trade feed, a 10-second VWAP view
-- archived to Delta Lake, and an ad-hoc query over the archive.
--
--   cargo run -- run examples/stocks.sql
--
-- The feed is bounded (`limit`) and runs as fast as possible (`rate = 0`),
-- so the script ends by itself once every window is committed. Drop `limit`
-- and set a rate (e.g. rate = '2000') for a live feed; stop it with
-- `--for 1m` or Ctrl-C, and run the script again to resume.

CREATE STREAM IF NOT EXISTS trades
  WITH (connector = 'stocks', seed = '42', rate = '0', limit = '200000');

CREATE MATERIALIZED VIEW IF NOT EXISTS vwap_10s
  WITH (archive = 'delta', path = 'vwap_10s') AS
  SELECT symbol, window_start, window_end,
         sum(price * volume) / sum(volume) AS vwap,
         sum(volume) AS volume,
         count(*) AS trades
  FROM TUMBLE(trades, ts, INTERVAL '10' SECOND)
  GROUP BY symbol, window_start, window_end;

-- Waits for the bounded job, then reads the archive.
SELECT symbol, count(*) AS windows, sum(volume) AS volume,
       round(sum(vwap * volume) / sum(volume), 2) AS avg_vwap
FROM vwap_10s
GROUP BY symbol
ORDER BY volume DESC
LIMIT 10;

SHOW JOBS;
