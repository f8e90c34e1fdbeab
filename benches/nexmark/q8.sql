-- Nexmark q8: monitor new users. The people who registered and opened an
-- auction in the same 10 s TUMBLE window: a windowed join of person and
-- auction.
-- Differs from the standard text only in form: the standard joins two
-- windowed GROUP BYs (person by id and name, auction by seller). Here the
-- windowed join comes first and one GROUP BY removes a seller's repeated
-- auctions, which gives the same rows.
SELECT p.id, p.name, p.window_start AS starttime
FROM TUMBLE(person, date_time, INTERVAL '10' SECOND) AS p
JOIN TUMBLE(auction, date_time, INTERVAL '10' SECOND) AS a
  ON p.id = a.seller AND p.window_start = a.window_start
GROUP BY p.id, p.name, p.window_start, p.window_end
