-- Room on each page for a row's two status updates (queued -> sending -> sent) to stay HOT: at
-- fillfactor 80 a bulk-inserted page had space for about a third of its rows' new versions, so
-- two of three updates went to another page and into every index (bench drain: 33% HOT). At 50
-- the claim's 500-row update fits and the page is pruned before the outcome's (93% HOT; drain
-- 7,180 -> 9,401 msgs/s back to back). The table takes about twice the pages.
ALTER TABLE et_messages SET (fillfactor = 50);

COMMENT ON COLUMN et_messages.rendered_subject IS
  'The subject as sent when rendering changed it (variables); NULL when sent as written: coalesce(rendered_subject, subject).';
COMMENT ON COLUMN et_messages.rendered_text IS
  'The text body as sent when rendering changed it (variables, or derived from body_html); NULL when sent as written.';
COMMENT ON COLUMN et_messages.rendered_html IS
  'The HTML body as sent when rendering changed it (variables); NULL when sent as written.';
