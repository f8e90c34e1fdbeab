-- Nexmark q17: auction statistics report. Per auction and day, the bids in
-- all and in three price ranges, and the lowest, highest, average and total
-- price.
-- Differs from the standard text as q15 does: a 1-day TUMBLE window instead
-- of grouping by the formatted day.
SELECT auction, to_char(window_start, '%Y-%m-%d') AS day,
       count(*) AS total_bids,
       count(*) FILTER (WHERE price < 10000) AS rank1_bids,
       count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids,
       count(*) FILTER (WHERE price >= 1000000) AS rank3_bids,
       min(price) AS min_price,
       max(price) AS max_price,
       avg(price) AS avg_price,
       sum(price) AS sum_price
FROM TUMBLE(bid, date_time, INTERVAL '1' DAY)
GROUP BY auction, window_start, window_end
