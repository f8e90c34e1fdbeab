-- Nexmark q3: local item suggestion. The people of Oregon, Idaho and
-- California who sell in category 10, with the auctions they open: a join
-- of two streams.
-- Differs from the standard text: the standard join has no time bound, so
-- its state would keep every person and auction forever, and DataFibers
-- refuses it. Here it is an interval join: the seller registered at most
-- 10 s before the auction opened and at most 1 s after it (the generator
-- draws sellers from the last 1,000 people, 5 s of events at 10,000
-- events/s, or up to 10 people ahead, 50 ms).
SELECT p.name, p.city, p.state, a.id
FROM auction AS a
JOIN person AS p
  ON a.seller = p.id
 AND p.date_time BETWEEN a.date_time - INTERVAL '10' SECOND AND a.date_time + INTERVAL '1' SECOND
WHERE a.category = 10 AND p.state IN ('OR', 'ID', 'CA')
