-- Nexmark q1 in Flink SQL: the text of benches/nexmark/q1.sql.
SELECT auction, bidder, 0.908 * price AS price, date_time, extra
FROM bid
