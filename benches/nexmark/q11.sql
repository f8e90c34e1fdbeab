-- Nexmark q11: user sessions. How many bids each bidder makes in each of
-- their sessions: a SESSION window per bidder that closes after 10 s with
-- no bid.
-- Standard.
SELECT bidder, count(*) AS bid_count, window_start, window_end
FROM SESSION(bid, date_time, INTERVAL '10' SECOND)
GROUP BY bidder, window_start, window_end
