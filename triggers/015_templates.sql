-- Templates (seed 002 §8): an outbound message with `variables` has its subject and bodies
-- rendered by the daemon with Handlebars at send time; one without variables is sent exactly as
-- written. Rendering runs after the row is long committed, so a template that cannot render is
-- refused here, at insert, naming the field, instead of failing the message later.
--
-- The daemon renders the subset of Handlebars this function accepts, and nothing else:
--   {{path}}            the value, HTML-escaped in body_html
--   {{{path}}}          the value, unescaped
--   {{#if path}} … {{else}} … {{/if}}, {{#unless path}} … {{/unless}}
--   {{#each path}} … {{/each}} (with this, @index, @key, @first, @last), {{#with path}} … {{/with}}
--   {{! comment }}, {{!-- comment --}}, \{{ for a literal {{, and ~ for whitespace control
-- where a path is `name`, `name.field`, `this`, `this.field`, `../name` or `@index`-style data.
-- Helpers with arguments, partials, subexpressions and block parameters are refused: they are
-- Handlebars features the daemon does not offer, and a template using one could not be sent.
-- tests/it/templates.rs renders every template this function accepts with the daemon's engine.
--
-- Strict rendering (tenant setting `strict_rendering: true`): every path outside #each and #with
-- blocks (whose paths are relative to items known only at send time), #if and #unless
-- conditions included, must be present in `variables`. Otherwise a placeholder without a value
-- renders empty and extra variables are ignored (seed 002 §8).

-- Why `p_template` cannot be rendered (with `p_variables`, strictly or not), or NULL when it can.
CREATE OR REPLACE FUNCTION et_template_refusal(p_template text, p_variables jsonb, p_strict boolean)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  pieces text[];
  piece text;
  i integer;
  n integer;
  close_at integer;
  tag text;
  body text;
  stack text[] := '{}';
  context_depth integer := 0;  -- open #each / #with blocks: paths inside are relative to an item
  path_re constant text := '^((\.\./)*(this|@[a-z]+|[A-Za-z_][A-Za-z0-9_-]*)([./][A-Za-z0-9_][A-Za-z0-9_-]*)*|\.)$';
  helper text;
  arg text;
  shown text;
BEGIN
  IF p_template IS NULL OR strpos(p_template, '{{') = 0 THEN
    RETURN NULL;
  END IF;
  -- every piece after the first starts right after a `{{`
  pieces := regexp_split_to_array(p_template, '\{\{');
  n := array_length(pieces, 1);
  i := 2;
  WHILE i <= n LOOP
    piece := pieces[i];
    -- `\{{` is a literal `{{` (a preceding `\\` would be an escaped backslash: refused as unclear)
    IF right(pieces[i - 1], 1) = '\' AND i > 1 THEN
      IF right(pieces[i - 1], 2) = '\\' THEN
        RETURN format('%s{{ (a backslash before an escaped mustache) is ambiguous; write the text without it', '\\');
      END IF;
      i := i + 1;
      CONTINUE;
    END IF;
    -- a long comment may hold `{{` and `}}`: it ends at the first `--}}`
    IF piece ~ '^~?!--' THEN
      body := array_to_string(pieces[i:n], '{{');
      close_at := strpos(body, '--}}');
      IF close_at = 0 THEN
        RETURN 'a {{!-- comment is not closed with --}}';
      END IF;
      -- skip the pieces the comment spans
      i := i + array_length(regexp_split_to_array(left(body, close_at), '\{\{'), 1);
      CONTINUE;
    END IF;
    IF left(piece, 1) = '{' OR left(piece, 2) = '~{' THEN
      close_at := strpos(piece, '}}}');
      IF close_at = 0 THEN
        RETURN format('{{%s is not closed with }}}', left(piece, 40));
      END IF;
      tag := substr(piece, 1, close_at + 2);            -- `{path}}}` or `~{path}~}}`
      body := btrim(regexp_replace(tag, '^~?\{|\}~?\}\}$', '', 'g'));
      shown := '{{' || tag;
      IF body !~ path_re THEN
        RETURN format('%s: only a variable name may stand in {{{ }}} (helpers are not supported)', shown);
      ELSIF body IN ('if', 'unless', 'each', 'with') THEN
        RETURN format('%s: %s is a block helper; a variable of that name is written {{{this.%s}}}', shown, body, body);
      END IF;
      IF p_strict AND context_depth = 0 AND NOT et_template_has(p_variables, body) THEN
        RETURN format('%s: variable %s is missing (strict rendering)', shown, body);
      END IF;
      i := i + 1;
      CONTINUE;
    END IF;
    close_at := strpos(piece, '}}');
    IF close_at = 0 THEN
      RETURN format('{{%s is not closed with }}', left(piece, 40));
    END IF;
    tag := left(piece, close_at - 1);
    shown := '{{' || tag || '}}';
    body := btrim(regexp_replace(tag, '^~|~$', '', 'g'));
    IF left(body, 1) = '!' THEN
      NULL;  -- a short comment
    ELSIF left(body, 1) = '#' THEN
      helper := substring(body FROM '^#\s*([A-Za-z]+)');
      arg := btrim(substring(body FROM '^#\s*[A-Za-z]+(.*)$'));
      IF helper IS NULL OR helper NOT IN ('if', 'unless', 'each', 'with') THEN
        RETURN format('%s: unknown block (only #if, #unless, #each and #with)', shown);
      END IF;
      IF arg !~ path_re THEN
        RETURN format('%s: #%s takes one variable name', shown, helper);
      END IF;
      IF p_strict AND context_depth = 0 AND NOT et_template_has(p_variables, arg) THEN
        RETURN format('%s: variable %s is missing (strict rendering)', shown, arg);
      END IF;
      stack := stack || helper;
      IF helper IN ('each', 'with') THEN
        context_depth := context_depth + 1;
      END IF;
    ELSIF left(body, 1) = '/' THEN
      helper := btrim(substr(body, 2));
      IF cardinality(stack) = 0 THEN
        RETURN format('%s closes a block that was not opened', shown);
      ELSIF stack[cardinality(stack)] <> helper THEN
        RETURN format('%s: the open block is #%s (close it with {{/%s}} first)', shown, stack[cardinality(stack)], stack[cardinality(stack)]);
      END IF;
      IF helper IN ('each', 'with') THEN
        context_depth := context_depth - 1;
      END IF;
      stack := stack[1:cardinality(stack) - 1];
    ELSIF body = 'else' THEN
      IF cardinality(stack) = 0 THEN
        RETURN format('%s outside a block', shown);
      END IF;
    ELSIF body IN ('if', 'unless', 'each', 'with') THEN
      RETURN format('%s: %s is a block helper; a variable of that name is written {{this.%s}}', shown, body, body);
    ELSIF left(body, 1) = '>' THEN
      RETURN format('%s: partials are not supported', shown);
    ELSIF body !~ path_re THEN
      RETURN format('%s: only a variable name may stand in {{ }} (helpers and expressions are not supported)', shown);
    ELSIF p_strict AND context_depth = 0 AND NOT et_template_has(p_variables, body) THEN
      RETURN format('%s: variable %s is missing (strict rendering)', shown, body);
    END IF;
    i := i + 1;
  END LOOP;
  IF cardinality(stack) > 0 THEN
    RETURN format('{{#%s}} is not closed (expected {{/%s}})', stack[cardinality(stack)], stack[cardinality(stack)]);
  END IF;
  RETURN NULL;
END
$$;

-- Whether `p_path` (`a`, `a.b`, `a/b`, `this.a`) names a value of `p_variables` (outside a block,
-- `this` is the variables themselves; `@data` and `../` have no value there).
CREATE OR REPLACE FUNCTION et_template_has(p_variables jsonb, p_path text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_path IN ('this', '.') THEN true
              WHEN p_path LIKE '@%' OR p_path LIKE '../%' THEN false
              ELSE p_variables #> regexp_split_to_array(regexp_replace(p_path, '^this[./]', ''), '[./]') IS NOT NULL
         END
$$;
