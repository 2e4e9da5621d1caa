{#- on-run-start: the loader's tables must be in the schema the models are built in; otherwise one
    line names the schema, the database and the variables to set, before any model runs. -#}
{% macro check_loader_tables() %}
  {% if execute %}
    {% for table in ['intercom_conversation_v1', 'intercom_conversation_part_v1'] %}
      {% if adapter.get_relation(database=target.database, schema=target.schema, identifier=table) is none %}
        {{ exceptions.raise_compiler_error(
             target.schema ~ '.' ~ table ~ ' does not exist in database ' ~ target.dbname ~ ' on ' ~ target.host
             ~ ':' ~ target.port ~ ': load first, or build where the loader loads (its default_target_schema'
             ~ ' and database; without Meltano TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA and _SQLALCHEMY_URL)') }}
      {% endif %}
    {% endfor %}
  {% endif %}
  select 1
{% endmacro %}
