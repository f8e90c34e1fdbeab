-- q3 in its standard form, as a batch query: the join with no time bound.
-- Equal to q3's result when the time bound loses no match.
SELECT p.name, p.city, p.state, a.id
FROM auction AS a
JOIN person AS p ON a.seller = p.id
WHERE a.category = 10 AND p.state IN ('OR', 'ID', 'CA')
