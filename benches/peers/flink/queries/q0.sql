-- Nexmark q0 in Flink SQL: the text of benches/nexmark/q0.sql.
SELECT auction, bidder, price, date_time, extra
FROM bid
