/* One case: GET /api/v1/cases/{case_no} (stage, deadline, steps, suspensions). */
(function () {
  'use strict';
  var H = window.HW, t = H.t, el = H.el;
  var caseNo = H.config.case_no;

  function fact(label, value) {
    return [el('dt', null, t(label)), el('dd', null, value === null || value === undefined ||
      value === '' ? '—' : value)];
  }

  function render(c) {
    var lad = c.ladder || {};
    var limit = [t('case.legal_days', { n: c.legal_days })];
    if (c.promised_days !== null) { limit.push(t('case.promised_days', { n: c.promised_days })); }
    var facts = H.clear(document.getElementById('case-facts'));
    [
      fact('case.item', c.item_name + ' (' + c.item_code + ')'),
      fact('common.department', c.department),
      fact('common.hall', H.hallLabel(c.hall, c.hall_name)),
      fact('common.window', c.window),
      fact('common.staff', c.staff ? H.staffLabel(c.staff, c.staff_name) : null),
      fact('case.status', t('status.' + c.status)),
      fact('case.accepted_at', H.fmtTime(c.accepted_at)),
      fact('case.completed_at', c.completed_at ? H.fmtTime(c.completed_at) : null),
      fact('case.limit', limit.join(' · ')),
      fact('case.deadline', lad.deadline),
      fact('case.days_over', lad.days_over),
      fact('case.stage', lad.stage ? el('span', { class: 'stage stage-' + lad.stage, id: 'case-stage' },
        lad.label) : null),
      fact('case.applicant', c.applicant)
    ].forEach(function (pair) { pair.forEach(function (n) { facts.appendChild(n); }); });

    var steps = H.clear(document.getElementById('case-steps'));
    if (!c.steps.length) { steps.appendChild(el('li', { class: 'no-data' }, t('common.nodata'))); }
    c.steps.forEach(function (s) {
      steps.appendChild(el('li', { class: s.superseded ? 'superseded' : '' },
        el('span', { class: 'stage stage-' + s.stage }, s.label),
        el('span', { class: 'step-date' }, s.on_date),
        s.superseded ? el('span', { class: 'muted' }, t('case.step.superseded')) : null));
    });

    var table = H.clear(document.getElementById('case-suspensions'));
    if (!c.suspensions.length) { table.appendChild(H.noData(3)); }
    c.suspensions.forEach(function (s) {
      table.appendChild(el('tr', null, el('td', null, s.reason), el('td', null, H.fmtTime(s.start)),
        el('td', null, s.end ? H.fmtTime(s.end) : '…')));
    });
    return c;
  }

  /* the evaluations correlation tied to this case (GET /api/v1/evaluations?case_no=) */
  function evaluations(c) {
    var today = H.beijingDate();
    var first = H.beijingDate(new Date(c.accepted_at));
    if (first < H.addDays(today, -365)) { first = H.addDays(today, -365); }
    var table = H.clear(document.getElementById('case-evaluations'));
    table.appendChild(el('thead', null, el('tr', null,
      ['reviews.evaluated_at', 'common.window', 'reviews.key', 'reviews.counted',
        'reviews.flags'].map(function (k) { return el('th', null, t(k)); }))));
    return H.api(H.withQuery('/api/v1/evaluations', { case_no: c.case_no, from: first,
      to: today })).then(function (page) {
      var body = el('tbody');
      if (!page.items.length) { body.appendChild(H.noData(5)); }
      page.items.forEach(function (e) {
        var day = e.business_day;
        body.appendChild(el('tr', { class: 'evaluation', dataset: { gateway: e.gateway,
          seq: String(e.seq) } },
          el('td', null, H.fmtTime(e.evaluated_at)), el('td', null, e.window),
          el('td', null, el('span', { class: 'key key-' + e.key }, t('key.' + e.key))),
          el('td', null, t(e.counted ? 'common.yes' : 'common.no')),
          el('td', null, e.flags.length ? el('a', { href: H.withQuery('/reviews',
            { first: day, last: day }) }, e.flags.map(function (f) {
            return el('span', { class: 'flag' }, t('flag.' + f)); })) : '—')));
      });
      table.appendChild(body);
    });
  }

  /* 调取取证 (supervisors): ask the window's camera for a picture now, follow the request
     (POST /api/v1/evidence-requests, GET …/{id}) until it is in the vault or failed */
  function evidenceButton(c) {
    var button = document.getElementById('evidence-ask');
    if (!button) { return c; }
    var stateLine = document.getElementById('evidence-state');
    var result = document.getElementById('evidence-result');
    if (c.window === null || c.window === undefined) {
      button.disabled = true;
      stateLine.textContent = t('case.evidence.no_window');
      return c;
    }
    function show(r) {
      var state = t('case.evidence.state.' + r.state);
      stateLine.textContent = t('case.evidence.state', { state: state }) +
        (r.state === 'failed' ? ' · ' + r.reason : '');
      stateLine.dataset.state = r.state;
      H.clear(result);
      if (r.state === 'done') {
        result.appendChild(el('img', { id: 'evidence-image', src: r.snapshot_url,
          alt: r.snapshot_sha256, class: 'evidence-image' }));
        result.appendChild(el('p', { class: 'muted' }, 'SHA-256 ' + r.snapshot_sha256));
        if (r.clip_url) { result.appendChild(el('a', { href: r.clip_url }, t('case.evidence.clip_link'))); }
      }
      return r;
    }
    function follow(id) {
      return H.api('/api/v1/evidence-requests/' + encodeURIComponent(id)).then(show).then(function (r) {
        if (r.state === 'done' || r.state === 'failed') { button.disabled = false; return r; }
        return new Promise(function (resolve) { setTimeout(resolve, 1000); }).then(function () {
          return follow(id);
        });
      });
    }
    button.onclick = function () {
      button.disabled = true;
      var clip = parseInt(document.getElementById('evidence-clip').value, 10) || 0;
      H.api('/api/v1/evidence-requests', { method: 'POST',
        body: { hall: c.hall, window: c.window, clip_s: clip } })
        .then(show).then(function (r) { return follow(r.id); })
        .catch(function (error) { button.disabled = false; H.notice(H.failure(error), 'error'); });
    };
    return c;
  }

  /* complaints tied to this case (GET /api/v1/complaints?case_no=), each linking to its page */
  function complaints(c) {
    return H.api(H.withQuery('/api/v1/complaints', { case_no: c.case_no })).then(function (page) {
      document.getElementById('case-complaint-count').textContent =
        t('complaints.count', { n: page.count });
      var list = H.clear(document.getElementById('case-complaints'));
      if (!page.items.length) { list.appendChild(el('li', { class: 'no-data' }, t('common.nodata'))); }
      page.items.forEach(function (x) {
        list.appendChild(el('li', { class: 'case-complaint', dataset: { number: x.complaint_no } },
          el('a', { href: H.withQuery('/complaints', { state: '', case_no: c.case_no,
            number: x.complaint_no }) }, x.complaint_no),
          el('span', { class: 'badge' }, t('complaint.state.' + x.state)),
          el('span', { class: 'note' }, x.text.length > 60 ? x.text.slice(0, 60) + '…' : x.text)));
      });
      return c;
    });
  }

  H.api('/api/v1/cases/' + encodeURIComponent(caseNo)).then(render).then(evidenceButton)
    .then(function (c) { return Promise.all([evaluations(c), complaints(c)]); })
    .catch(function (error) {
      H.notice(H.failure(error), 'error');
    }).then(function () { document.body.dataset.loaded = '1'; });
})();
