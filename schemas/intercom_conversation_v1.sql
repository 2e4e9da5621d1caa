-- intercom_conversation_v1: the WebhookDB table, made safe for target-postgres 0.8.1 loads.
--
-- Apply with `intercom-conversation-table` (which sets search_path to the target schema and
-- runs this file in one transaction) or with `psql -1 -v ON_ERROR_STOP=1 -f` (plain `psql -f`
-- works too: every statement is idempotent and the migration is one DO block, so one statement).
-- Object names are unqualified on purpose: everything lands in current_schema(), the first
-- existing schema of search_path. The script has no BEGIN/COMMIT, no CONCURRENTLY and no
-- VACUUM, so a caller can wrap it in a single transaction. Running it again changes nothing.
--
-- Why triggers: target-postgres stages each batch in a TEMPORARY copy of this table, where
-- `pk` becomes a BIGSERIAL of its own that restarts at 1 in every batch, and then runs
--   INSERT INTO t (pk, intercom_id, ...) SELECT tmp.pk, ... FROM tmp LEFT JOIN t ... WHERE t.intercom_id IS NULL
--   UPDATE t SET intercom_id = tmp.intercom_id, ..., data = tmp.data FROM tmp WHERE tmp.intercom_id = t.intercom_id
-- (no ON CONFLICT; the UPDATE also rewrites the rows the INSERT just added). Without the
-- triggers the second batch of new rows fails with "Key (pk)=(1) already exists".

-- BEFORE INSERT: every new row takes its pk from the table's own sequence. A staged or explicit
-- pk is ignored, because target-postgres always supplies one (1, 2, 3, ... per batch). The
-- sequence is found from the firing table (TG_TABLE_SCHEMA/TG_TABLE_NAME), so the same function
-- body works in any schema. A plain INSERT that relies on the column default draws twice (the
-- default, then this): harmless gaps, sequences never promise gaplessness.
-- The deletions table is read with the search_path this file was applied with (SET ... FROM CURRENT:
-- the schema it creates everything in), so the query is planned once per session, not once per row
-- (a dynamic EXECUTE here was most of a loaded row's time in PostgreSQL, issue 25). A schema renamed
-- afterwards needs the file applied again (the loader does it before every load).
CREATE OR REPLACE FUNCTION intercom_conversation_v1_insert_pk() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  deletion record;
  conversation_id text;
BEGIN
  NEW.pk := pg_catalog.nextval(pg_catalog.pg_get_serial_sequence(
    pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), 'pk'));
  -- A conversation already known to be deleted in Intercom (the loader drains its tables in no
  -- particular order) is inserted marked, or not at all when deletions remove rows. The parts table
  -- (intercom_conversation_part_v1.sql) shares this function: its trigger names the column that
  -- holds its conversation's id (plpgsql compiles a trigger function per table, so the other
  -- branch's column need not exist).
  IF TG_NARGS > 0 AND TG_ARGV[0] = 'conversation_intercom_id' THEN
    conversation_id := NEW.conversation_intercom_id;
  ELSE
    conversation_id := NEW.intercom_id;
  END IF;
  SELECT d.deleted_at, d.remove_row INTO deletion
  FROM intercom_conversation_v1_deletion AS d WHERE d.intercom_id = conversation_id;
  IF deletion.remove_row THEN
    RETURN NULL;
  ELSIF deletion.remove_row IS NOT NULL THEN
    NEW.data := NEW.data || pg_catalog.jsonb_build_object(
      'deleted', true, 'deleted_at', extract(epoch FROM deletion.deleted_at)::bigint);
  END IF;
  RETURN NEW;
END
$$;

-- BEFORE UPDATE: a row keeps its pk forever, and (WebhookDB's guarantee) a payload with an
-- older updated_at never replaces one with a newer updated_at: the row stays exactly as it is
-- (RETURN NULL skips the update of that row). An equal updated_at may replace the row, so a
-- richer payload for the same version still lands. An update that changes nothing is skipped
-- too: target-postgres re-updates every row it has just inserted, and skipping saves a second
-- copy of each row (and its TOASTed data) per load.
CREATE OR REPLACE FUNCTION intercom_conversation_v1_keep_pk_and_newest() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.pk := OLD.pk;
  -- A conversation deleted in Intercom stays marked: a payload read before the deletion
  -- cannot bring it back to life.
  IF OLD.data ? 'deleted' AND NOT NEW.data ? 'deleted' THEN
    NEW.data := NEW.data || pg_catalog.jsonb_build_object(
      'deleted', OLD.data -> 'deleted', 'deleted_at', OLD.data -> 'deleted_at');
  END IF;
  IF OLD.updated_at IS NOT NULL
     AND (NEW.updated_at IS NULL OR NEW.updated_at < OLD.updated_at) THEN
    RETURN NULL;
  END IF;
  IF NEW IS NOT DISTINCT FROM OLD THEN
    RETURN NULL;
  END IF;
  RETURN NEW;
END
$$;

-- Create the table exactly as documented, or bring a table that target-postgres created itself
-- (intercom_id text PRIMARY KEY, timestamp WITHOUT time zone, no pk, maybe _sdc_* columns,
-- maybe varchar/text/json columns, maybe no unique key) to that shape without losing rows.
-- One DO block is one statement: the migration happens completely or not at all.
DO $migrate$
DECLARE
  -- The documented columns and their types as format_type() spells them.
  names constant text[] := ARRAY['pk', 'intercom_id', 'title', 'state', 'open', 'read',
                                 'created_at', 'updated_at', 'data'];
  types constant text[] := ARRAY['bigint', 'text', 'text', 'text', 'boolean', 'boolean',
                                 'timestamp with time zone', 'timestamp with time zone', 'jsonb'];
  tbl     text;
  rel     regclass;
  have    text;
  val     text;
  pkey    text;
  clauses text[] := '{}';
  notes   text[] := '{}';
  unknown text;
  n       bigint;
BEGIN
  IF current_schema() IS NULL THEN
    RAISE EXCEPTION 'intercom_conversation_v1: search_path (%) names no existing schema',
      current_setting('search_path');
  END IF;
  tbl := format('%I.%I', current_schema(), 'intercom_conversation_v1');
  rel := to_regclass(tbl);

  IF rel IS NULL THEN
    -- The documented definition (`webhookdb fixture intercom_conversation_v1`), unqualified.
    CREATE TABLE intercom_conversation_v1 (
      pk bigserial PRIMARY KEY,
      intercom_id text UNIQUE NOT NULL,
      title text,
      state text,
      open boolean,
      read boolean,
      created_at timestamptz,
      updated_at timestamptz,
      data jsonb NOT NULL
    );
    RETURN;
  END IF;

  -- A column nobody documented is somebody's data: refuse instead of dropping it silently.
  SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO unknown
  FROM pg_attribute
  WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped
    AND attname <> ALL (names) AND attname NOT LIKE '\_sdc\_%';
  IF unknown IS NOT NULL THEN
    RAISE EXCEPTION '%: undocumented columns %; move their data elsewhere and drop them first',
      tbl, unknown;
  END IF;

  -- The column changes below are collected into ONE ALTER TABLE: the table is rewritten once.
  -- First target-postgres's metadata columns: they only describe its own loads.
  SELECT array_agg(format('DROP COLUMN %I', attname) ORDER BY attnum),
         string_agg(quote_ident(attname), ', ' ORDER BY attnum)
  INTO clauses, unknown
  FROM pg_attribute
  WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped AND attname LIKE '\_sdc\_%';
  clauses := coalesce(clauses, '{}');
  IF unknown IS NOT NULL THEN
    notes := notes || format('dropped %s', unknown);
  END IF;

  -- A primary key on anything but pk (target-postgres puts it on intercom_id) goes; the
  -- uniqueness of intercom_id comes back below as the documented UNIQUE constraint.
  SELECT conname INTO pkey FROM pg_constraint
  WHERE conrelid = rel AND contype = 'p'
    AND conkey <> ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = rel AND attname = 'pk')];
  IF pkey IS NOT NULL THEN
    clauses := clauses || format('DROP CONSTRAINT %I', pkey);
    notes := notes || format('dropped primary key %I', pkey);
  END IF;

  FOR i IN 1 .. array_length(names, 1) LOOP
    SELECT format_type(atttypid, atttypmod) INTO have
    FROM pg_attribute WHERE attrelid = rel AND attname = names[i] AND NOT attisdropped;
    IF have IS NULL THEN
      IF names[i] IN ('intercom_id', 'data') THEN
        RAISE EXCEPTION '%: has no % column, cannot make it intercom_conversation_v1', tbl, names[i];
      END IF;
      -- bigserial: the sequence numbers the existing rows as it adds the column.
      clauses := clauses || format('ADD COLUMN %I %s', names[i],
                                   CASE names[i] WHEN 'pk' THEN 'bigserial' ELSE types[i] END);
      notes := notes || format('added %I', names[i]);
    ELSIF have <> types[i] THEN
      val := format('NULLIF(btrim(%I::text), %L)', names[i], '');
      clauses := clauses || format('ALTER COLUMN %I TYPE %s USING %s', names[i], types[i],
        CASE
          -- target-postgres wrote UTC wall-clock time into timestamp without time zone.
          WHEN types[i] = 'timestamp with time zone' AND have = 'timestamp without time zone'
            THEN format('%I AT TIME ZONE %L', names[i], 'UTC')
          -- Text with an explicit offset is an instant; text without one is UTC wall-clock.
          WHEN types[i] = 'timestamp with time zone' THEN format(
            'CASE WHEN %1$s ~* %2$L THEN (%1$s)::timestamptz ELSE (%1$s)::timestamp AT TIME ZONE %3$L END',
            val, '\d:\d\d(:\d\d(\.\d+)?)?\s*(z|utc|gmt|[+-]\d\d(:?\d\d)?)$', 'UTC')
          WHEN types[i] IN ('jsonb', 'boolean') THEN format('(%s)::%s', val, types[i])
          ELSE format('%I::%s', names[i], types[i])
        END);
      notes := notes || format('%I %s -> %s', names[i], have, types[i]);
    END IF;
  END LOOP;

  IF NOT EXISTS (SELECT FROM pg_constraint c JOIN pg_attribute a
                 ON a.attrelid = c.conrelid AND c.conkey = ARRAY[a.attnum]
                 WHERE c.conrelid = rel AND c.contype = 'p' AND a.attname = 'pk') THEN
    clauses := clauses || 'ADD CONSTRAINT intercom_conversation_v1_pkey PRIMARY KEY (pk)'::text;
  END IF;

  IF cardinality(clauses) > 0 THEN
    EXECUTE format('ALTER TABLE %s %s', tbl, array_to_string(clauses, ', '));
  END IF;

  -- NOT NULL intercom_id and data without dropping rows: Intercom's id is in the payload, and
  -- a row without a payload keeps an empty object.
  EXECUTE format('UPDATE %s SET intercom_id = data->>%L WHERE intercom_id IS NULL', tbl, 'id');
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN notes := notes || format('intercom_id taken from data->>''id'' in %s rows', n); END IF;
  EXECUTE format('UPDATE %s SET data = %L WHERE data IS NULL', tbl, '{}');
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n > 0 THEN notes := notes || format('data set to {} in %s rows', n); END IF;

  clauses := '{}';
  IF NOT EXISTS (SELECT FROM pg_constraint c JOIN pg_attribute a
                 ON a.attrelid = c.conrelid AND c.conkey = ARRAY[a.attnum]
                 WHERE c.conrelid = rel AND c.contype IN ('p', 'u') AND a.attname = 'intercom_id') THEN
    -- Duplicates can only exist without a unique key: keep the newest updated_at (then the
    -- highest pk) of each intercom_id, as the replication itself would have.
    EXECUTE format('DELETE FROM %1$s t USING (SELECT pk, row_number() OVER (PARTITION BY intercom_id '
                   'ORDER BY updated_at DESC NULLS LAST, pk DESC) AS rn FROM %1$s) d '
                   'WHERE t.pk = d.pk AND d.rn > 1', tbl);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN notes := notes || format('removed %s older duplicate rows', n); END IF;
    clauses := clauses || 'ADD CONSTRAINT intercom_conversation_v1_intercom_id_key UNIQUE (intercom_id)'::text;
    notes := notes || 'added UNIQUE (intercom_id)'::text;
  END IF;
  -- Nullability exactly as documented: only pk, intercom_id and data are NOT NULL.
  SELECT clauses || array_agg(format('ALTER COLUMN %I %s NOT NULL', attname,
                                     CASE WHEN attnotnull THEN 'DROP' ELSE 'SET' END))
  INTO clauses
  FROM pg_attribute
  WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped
    AND attnotnull <> (attname IN ('pk', 'intercom_id', 'data'));
  IF cardinality(clauses) > 0 THEN
    EXECUTE format('ALTER TABLE %s %s', tbl, array_to_string(clauses, ', '));
  END IF;

  IF pg_get_serial_sequence(tbl, 'pk') IS NULL THEN
    RAISE EXCEPTION '%: pk is not a bigserial (no owned sequence); the triggers need one', tbl;
  END IF;
  IF cardinality(notes) > 0 THEN
    RAISE NOTICE 'intercom_conversation_v1: migrated %: %', tbl, array_to_string(notes, '; ');
  END IF;
END
$migrate$;

-- The triggers. CREATE OR REPLACE (PostgreSQL 14+): re-running the script neither duplicates nor
-- fails on them, and takes no heavier lock than creating them.
CREATE OR REPLACE TRIGGER intercom_conversation_v1_insert_pk
  BEFORE INSERT ON intercom_conversation_v1
  FOR EACH ROW EXECUTE FUNCTION intercom_conversation_v1_insert_pk();
CREATE OR REPLACE TRIGGER intercom_conversation_v1_keep_pk_and_newest
  BEFORE UPDATE ON intercom_conversation_v1
  FOR EACH ROW EXECUTE FUNCTION intercom_conversation_v1_keep_pk_and_newest();

-- Deletions (API 2.16, GET /conversations/deleted). target-postgres loads the tap's stream
-- intercom_conversation_v1_deletion into this table (created here, so its timestamp keeps its
-- time zone); each row loaded marks the conversation's row (data gains "deleted": true and
-- "deleted_at", its other columns stay as they were) or, with remove_row, deletes it.
CREATE TABLE IF NOT EXISTS intercom_conversation_v1_deletion (
  intercom_id text PRIMARY KEY,
  deleted_at timestamptz,
  metrics_retained boolean,
  remove_row boolean NOT NULL DEFAULT false
);

-- The parts table's trigger shares it, naming its table and the column of its conversation's id.
CREATE OR REPLACE FUNCTION intercom_conversation_v1_apply_deletion() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  target text := CASE WHEN TG_NARGS > 0 THEN TG_ARGV[0] ELSE 'intercom_conversation_v1' END;
  id_column text := CASE WHEN TG_NARGS > 1 THEN TG_ARGV[1] ELSE 'intercom_id' END;
BEGIN
  IF NEW.remove_row THEN
    EXECUTE pg_catalog.format('DELETE FROM %I.%I WHERE %I = $1', TG_TABLE_SCHEMA, target, id_column)
      USING NEW.intercom_id;
  ELSE
    EXECUTE pg_catalog.format('UPDATE %I.%I SET data = data || $2 WHERE %I = $1 AND NOT data ? %L',
                              TG_TABLE_SCHEMA, target, id_column, 'deleted')
      USING NEW.intercom_id, pg_catalog.jsonb_build_object(
        'deleted', true, 'deleted_at', extract(epoch FROM NEW.deleted_at)::bigint);
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER intercom_conversation_v1_apply_deletion
  AFTER INSERT OR UPDATE ON intercom_conversation_v1_deletion
  FOR EACH ROW EXECUTE FUNCTION intercom_conversation_v1_apply_deletion();
