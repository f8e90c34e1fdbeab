-- q3 as a batch query: the same interval join.
SELECT p.name, p.city, p.state, a.id
FROM auction AS a
JOIN person AS p
  ON a.seller = p.id
 AND p.date_time BETWEEN a.date_time - INTERVAL '10' SECOND AND a.date_time + INTERVAL '1' SECOND
WHERE a.category = 10 AND p.state IN ('OR', 'ID', 'CA')
