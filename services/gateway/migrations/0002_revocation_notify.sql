-- depends: 0001_gateway
-- A revoked key must stop working at once on every gateway process. Each one LISTENs on this channel and
-- drops its cache of valid keys when a key is revoked or deleted, by `oms apikey revoke` or by hand in SQL.
CREATE FUNCTION api_key_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('oms_api_key_revoked', OLD.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_key_revoked AFTER UPDATE OF revoked_at OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_key_revoked();
