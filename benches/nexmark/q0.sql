-- Nexmark q0: pass-through. Every bid, unchanged: measures the cost of
-- reading, decoding and writing events with no work in between.
-- Standard (the time column is date_time here, dateTime in Flink's text).
SELECT auction, bidder, price, date_time, extra
FROM bid
