-- intercom_conversation_part_v1: every part of every conversation, kept across runs.
--
-- Intercom returns only the 500 most recent parts of a conversation; this table keeps every part it
-- has ever returned, so a long conversation's older parts stay here after they drop out of the API.
-- The tap's stream intercom_conversation_part_v1 fills it (one record per part of each conversation
-- it emits), loaded by target-postgres like the conversation table, with the same trigger approach.
--
-- Apply AFTER intercom_conversation_v1.sql (its deletions table decides what a deleted conversation's
-- parts become): `intercom-conversation-table` applies both, in that order, in one transaction; or
-- `psql -1 -v ON_ERROR_STOP=1 -f schemas/intercom_conversation_v1.sql -f schemas/intercom_conversation_part_v1.sql`
-- (plain `psql -f` works too: every statement is idempotent). Object names are unqualified: everything
-- lands in current_schema(). No BEGIN/COMMIT, no CONCURRENTLY, no VACUUM. Running it again changes nothing.

DO $check$
BEGIN
  IF current_schema() IS NULL THEN
    RAISE EXCEPTION 'intercom_conversation_part_v1: search_path (%) names no existing schema',
      current_setting('search_path');
  END IF;
  IF to_regclass(format('%I.%I', current_schema(), 'intercom_conversation_v1_deletion')) IS NULL THEN
    RAISE EXCEPTION 'intercom_conversation_part_v1: apply intercom_conversation_v1.sql to schema % first '
      '(intercom_conversation_v1_deletion is missing)', current_schema();
  END IF;
END
$check$;

CREATE TABLE IF NOT EXISTS intercom_conversation_part_v1 (
  pk bigserial PRIMARY KEY,
  intercom_id text UNIQUE NOT NULL,           -- the part's id
  conversation_intercom_id text NOT NULL,     -- intercom_conversation_v1.intercom_id
  part_type text,                             -- comment, note, assignment, close, open, snoozed, ...
  author_type text,                           -- author.type: admin, user, lead, bot, team
  author_id text,                             -- author.id
  assigned_to_type text,                      -- assigned_to.type on an assignment: admin, team, nobody_admin
  assigned_to_id text,                        -- assigned_to.id on an assignment
  body text,                                  -- HTML as sent
  redacted boolean,
  created_at timestamptz,
  updated_at timestamptz,                     -- a newer one replaces the row: an edited or redacted part
  data jsonb NOT NULL                         -- the part exactly as sent
);

-- A table target-postgres created itself (a run without this file first: intercom_id its primary
-- key, no pk, timestamp without time zone holding UTC wall-clock time, _sdc_* columns) is brought to
-- the shape above without losing a row, in one ALTER TABLE (one rewrite). Its rows may be parts that
-- Intercom no longer returns: they are kept. Columns nobody documented are refused, not dropped.
DO $migrate$
DECLARE
  rel constant regclass := format('%I.%I', current_schema(), 'intercom_conversation_part_v1')::regclass;
  documented constant text[] := ARRAY['pk', 'intercom_id', 'conversation_intercom_id', 'part_type', 'author_type',
    'author_id', 'assigned_to_type', 'assigned_to_id', 'body', 'redacted', 'created_at', 'updated_at', 'data'];
  column_types constant text[] := ARRAY['bigint', 'text', 'text', 'text', 'text', 'text', 'text', 'text', 'text',
    'boolean', 'timestamp with time zone', 'timestamp with time zone', 'jsonb'];
  have    text;
  changes text[] := '{}';
  unknown text;
BEGIN
  SELECT string_agg(quote_ident(attname), ', ') INTO unknown FROM pg_attribute
  WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped AND attname <> ALL (documented)
    AND attname NOT LIKE '\_sdc\_%';
  IF unknown IS NOT NULL THEN
    RAISE EXCEPTION '%: undocumented columns %; move their data elsewhere and drop them first', rel, unknown;
  END IF;
  SELECT coalesce(array_agg(format('DROP COLUMN %I', attname)), '{}') INTO changes FROM pg_attribute
  WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped AND attname LIKE '\_sdc\_%';
  SELECT changes || array_agg(format('DROP CONSTRAINT %I', conname)) INTO changes FROM pg_constraint
  WHERE conrelid = rel AND contype = 'p' AND conkey IS DISTINCT FROM ARRAY[(SELECT attnum FROM pg_attribute
                                                                            WHERE attrelid = rel AND attname = 'pk')];
  FOR i IN 1 .. array_length(documented, 1) LOOP
    SELECT format_type(atttypid, atttypmod) INTO have FROM pg_attribute
    WHERE attrelid = rel AND attname = documented[i] AND NOT attisdropped;
    IF have IS NULL THEN
      changes := changes || format('ADD COLUMN %I %s', documented[i],
                                   CASE documented[i] WHEN 'pk' THEN 'bigserial' ELSE column_types[i] END);
    ELSIF have = 'timestamp without time zone' AND column_types[i] = 'timestamp with time zone' THEN
      changes := changes || format('ALTER COLUMN %1$I TYPE timestamptz USING %1$I AT TIME ZONE %2$L', documented[i],
                                   'UTC');
    ELSIF have <> column_types[i] THEN
      changes := changes || format('ALTER COLUMN %1$I TYPE %2$s USING %1$I::text::%2$s', documented[i],
                                   column_types[i]);
    END IF;
  END LOOP;
  IF cardinality(changes) = 0 THEN
    RETURN;  -- already as documented
  END IF;
  IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = rel AND contype = 'p'
                 AND conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = rel AND attname = 'pk')]) THEN
    changes := changes || 'ADD PRIMARY KEY (pk)'::text;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = rel AND contype = 'u'
                 AND conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = rel AND attname = 'intercom_id')])
  THEN
    changes := changes || 'ADD UNIQUE (intercom_id)'::text;
  END IF;
  EXECUTE format('UPDATE %s SET data = %L WHERE data IS NULL', rel, '{}');
  EXECUTE format('ALTER TABLE %s %s', rel, array_to_string(changes, ', '));
  EXECUTE format('ALTER TABLE %s ALTER COLUMN intercom_id SET NOT NULL, ALTER COLUMN conversation_intercom_id '
                 'SET NOT NULL, ALTER COLUMN data SET NOT NULL', rel);
  RAISE NOTICE 'intercom_conversation_part_v1: migrated %: %', rel, array_to_string(changes, '; ');
END
$migrate$;

-- A conversation's parts in order: its parts, its first admin reply, its reopens.
CREATE INDEX IF NOT EXISTS intercom_conversation_part_v1_conversation
  ON intercom_conversation_part_v1 (conversation_intercom_id, created_at);

-- The triggers, with the conversation table's own functions (intercom_conversation_v1.sql), so the two
-- tables follow one rule. BEFORE INSERT: pk from the table's own sequence (target-postgres copies its
-- staged pk, 1, 2, 3, ... per batch), and a part of a conversation already known to be deleted (the
-- loader drains its tables in no particular order) is inserted marked, or not at all when deletions
-- remove rows. BEFORE UPDATE: a row keeps its pk, a part with an older updated_at never replaces a
-- newer one (an equal one may), a deleted mark stays, and an update that changes nothing is skipped.
CREATE OR REPLACE TRIGGER intercom_conversation_part_v1_insert_pk
  BEFORE INSERT ON intercom_conversation_part_v1
  FOR EACH ROW EXECUTE FUNCTION intercom_conversation_v1_insert_pk('conversation_intercom_id');
CREATE OR REPLACE TRIGGER intercom_conversation_part_v1_keep_pk_and_newest
  BEFORE UPDATE ON intercom_conversation_part_v1
  FOR EACH ROW EXECUTE FUNCTION intercom_conversation_v1_keep_pk_and_newest();

-- A deletion loaded after the parts: the conversation's parts follow its rule, like its row
-- (deleted_conversations: mark adds "deleted": true and "deleted_at" to each part's data; remove
-- deletes them).
CREATE OR REPLACE TRIGGER intercom_conversation_part_v1_apply_deletion
  AFTER INSERT OR UPDATE ON intercom_conversation_v1_deletion
  FOR EACH ROW EXECUTE FUNCTION intercom_conversation_v1_apply_deletion('intercom_conversation_part_v1',
                                                                         'conversation_intercom_id');
