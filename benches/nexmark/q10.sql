-- Nexmark q10: log to file system. Every bid with the day and the minute
-- it came in, the columns a file sink partitions by: stateless date
-- formatting.
-- Differs from the standard text: Flink's DATE_FORMAT(dateTime,
-- 'yyyy-MM-dd') is written to_char(date_time, '%Y-%m-%d'), and partitioning
-- the written files is the sink's business, not the query's.
SELECT auction, bidder, price, date_time, extra,
       to_char(date_time, '%Y-%m-%d') AS dt,
       to_char(date_time, '%H:%M') AS hm
FROM bid
