DROP FUNCTION app.purge_request_throttles(), app.throttle_clear(text),
    app.throttle_hit(text, integer, integer, integer);
DROP TABLE request_throttles;
