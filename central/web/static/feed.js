/* 好差评 feed status (GET /api/v1/feed/status): records by state with retries and the failure's
   reason, filtered by hall and state; supervisors also see the outbox by channel and state
   (GET /api/v1/outbox/status). A hall manager gets their halls' records, as the API has it. */
(function () {
  'use strict';
  var H = window.HW, t = H.t, el = H.el;
  var STATES = ['pending', 'sending', 'delivered', 'failed', 'held', 'waiting'];
  var form = document.getElementById('feed-form');
  var params = new URLSearchParams(location.search);
  document.getElementById('f-hall').value = params.get('hall') || '';
  document.getElementById('f-status').value = params.get('status') || '';

  function state(s) {
    return el('span', { class: 'feed-state state-' + s }, t('feed.status.' + s));
  }

  function counts(data) {
    var box = H.clear(document.getElementById('feed-counts'));
    STATES.forEach(function (s) {
      if (data.counts[s] === undefined) { return; }
      box.appendChild(el('span', { class: 'flag-count', dataset: { state: s } }, state(s), ' ',
        el('strong', null, String(data.counts[s]))));
    });
  }

  function records(data) {
    var table = H.clear(document.getElementById('feed-records'));
    var heads = ['feed.col.record', 'common.hall', 'feed.col.op', 'feed.col.level',
      'feed.col.mapping', 'feed.col.channel', 'feed.status', 'feed.col.attempts',
      'feed.col.error', 'feed.col.enqueued', 'feed.col.delivered'];
    table.appendChild(el('thead', null, el('tr', null, heads.map(function (k) {
      return el('th', null, t(k)); }))));
    var body = el('tbody');
    if (!data.records.length) { body.appendChild(H.noData(heads.length)); }
    data.records.forEach(function (r) {
      body.appendChild(el('tr', { class: 'feed-record', dataset: { status: r.status, hall: r.hall } },
        el('td', null, r.gateway + '/' + r.seq + ' v' + r.version),
        el('td', null, r.hall),
        el('td', null, t('feed.op.' + r.op)),
        el('td', null, r.level === null ? '—' : String(r.level)),
        el('td', null, r.mapping_version),
        el('td', null, t('feed.channel.' + r.channel)),
        el('td', null, state(r.status)),
        el('td', null, String(r.attempts)),
        el('td', { class: 'feed-error' }, r.last_error || '—'),
        el('td', null, H.fmtTime(r.enqueued_at)),
        el('td', null, r.delivered_at ? H.fmtTime(r.delivered_at) : '—')));
    });
    table.appendChild(body);
  }

  function outbox() {
    if (!H.config.outbox) { return null; }
    return H.api('/api/v1/outbox/status').then(function (data) {
      var panel = document.getElementById('outbox-panel');
      var table = H.clear(document.getElementById('outbox-channels'));
      table.appendChild(el('thead', null, el('tr', null, el('th', null, t('feed.col.channel')),
        STATES.map(function (s) { return el('th', null, t('feed.status.' + s)); }))));
      var body = el('tbody');
      var channels = Object.keys(data.channels).sort();
      if (!channels.length) { body.appendChild(H.noData(STATES.length + 1)); }
      channels.forEach(function (ch) {
        body.appendChild(el('tr', { class: 'outbox-channel', dataset: { channel: ch } },
          el('td', null, t('feed.channel.' + ch)),
          STATES.map(function (s) { return el('td', { dataset: { state: s } },
            String(data.channels[ch][s] || 0)); })));
      });
      table.appendChild(body);
      panel.hidden = false;
    });
  }

  form.onsubmit = function (event) {
    event.preventDefault();
    var query = {};
    var hall = document.getElementById('f-hall').value.trim();
    var status = document.getElementById('f-status').value;
    if (hall) { query.hall = hall; }
    if (status) { query.status = status; }
    location.assign(H.withQuery('/feed', query));
  };

  var query = { limit: 200 };
  if (params.get('hall')) { query.hall = params.get('hall'); }
  if (params.get('status')) { query.status = params.get('status'); }
  H.api(H.withQuery('/api/v1/feed/status', query))
    .then(function (data) { counts(data); records(data); })
    .then(outbox)
    .catch(function (error) { H.notice(H.failure(error), 'error'); })
    .then(function () { document.body.dataset.loaded = '1'; });
})();
