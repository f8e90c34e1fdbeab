-- Nexmark q21: add channel id. Bids of the four known channels or with a
-- channel_id parameter in their url, with the channel's id: a CASE and a
-- regular expression.
-- Differs from the standard text: Flink's REGEXP_EXTRACT(url, re, 2) is
-- written with DataFusion's regexp_match(url, re)[2].
SELECT auction, bidder, price, channel,
       CASE
         WHEN lower(channel) = 'apple' THEN '0'
         WHEN lower(channel) = 'google' THEN '1'
         WHEN lower(channel) = 'facebook' THEN '2'
         WHEN lower(channel) = 'baidu' THEN '3'
         ELSE regexp_match(url, '(&|^)channel_id=([^&]*)')[2]
       END AS channel_id
FROM bid
WHERE regexp_match(url, '(&|^)channel_id=([^&]*)')[2] IS NOT NULL
   OR lower(channel) IN ('apple', 'google', 'facebook', 'baidu')
