-- Nexmark q22: get URL directories. Every bid with the first three
-- directories of its url: string splitting.
-- Differs from the standard text: Flink's SPLIT_INDEX(url, '/', i) counts
-- from 0, DataFusion's split_part(url, '/', i + 1) from 1.
SELECT auction, bidder, price, channel,
       split_part(url, '/', 4) AS dir1,
       split_part(url, '/', 5) AS dir2,
       split_part(url, '/', 6) AS dir3
FROM bid
