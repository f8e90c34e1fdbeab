-- Nexmark q1: currency conversion. Every bid with its price converted from
-- dollars to euros (x 0.908): a stateless projection.
-- Standard.
SELECT auction, bidder, 0.908 * price AS price, date_time, extra
FROM bid
