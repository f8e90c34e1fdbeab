-- Nexmark q2 in Flink SQL: the text of benches/nexmark/q2.sql.
SELECT auction, price
FROM bid
WHERE auction % 123 = 0
