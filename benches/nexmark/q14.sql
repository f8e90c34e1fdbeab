-- Nexmark q14: calculation. Bids priced between 1,000,000 and 50,000,000
-- after conversion (x 0.908), with the part of the day they came in and the
-- number of 'c's in their extra: stateless scalar functions and a filter.
-- Differs from the standard text: the user-defined function
-- count_char(extra, 'c') is written length(extra) - length(replace(extra,
-- 'c', '')), and HOUR(dateTime) is date_part('hour', date_time).
SELECT auction, bidder, 0.908 * price AS price,
       CASE
         WHEN date_part('hour', date_time) >= 8 AND date_part('hour', date_time) <= 18 THEN 'dayTime'
         WHEN date_part('hour', date_time) <= 6 OR date_part('hour', date_time) >= 20 THEN 'nightTime'
         ELSE 'otherTime'
       END AS bid_time_type,
       date_time, extra,
       length(extra) - length(replace(extra, 'c', '')) AS c_counts
FROM bid
WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000
