/* 差评 work orders (差评工单): orders by state with their stage, the stage's due day, overdue
   and escalation (GET /api/v1/followups); one order's per-stage deadlines, history and next
   step (POST …/assign|verify|rectify|call-back|close, checked by the state machine); appeals
   (…/appeal, hall managers and department leaders) and their decision (…/appeal-decision,
   supervisors); the month's statistic (GET /api/v1/followups/statistics, CSV beside it). */
(function () {
  'use strict';
  var H = window.HW, t = H.t, el = H.el;
  var STATES = ['created', 'assigned', 'verified', 'appealed', 'rectified', 'called_back', 'closed'];
  var ANSWERS = ['satisfied', 'basically', 'not_satisfied', 'unreachable'];
  var EVERY_S = 30;
  var mayAppeal = !!H.config.may_appeal, mayDecide = !!H.config.may_decide_appeal;
  var selected = null;
  var timer = null;

  function card(item) {
    var level = item.escalation_level || 0;
    return el('article', { class: 'fu-card' + (item.overdue ? ' overdue' : '') +
      (level ? ' escalated' : '') + (selected === item.item_id ? ' selected' : ''),
      dataset: { item: item.item_id, stage: item.stage }, tabindex: '0',
      onclick: function () { open(item.item_id); } },
      el('header', null, el('strong', null, H.hallLabel(item.hall, item.hall_name),
        ' · ' + t('window.n', { n: item.window })),
        item.overdue ? el('span', { class: 'badge bad' }, t('followups.overdue')) : null,
        item.excluded ? el('span', { class: 'badge good' }, t('wo.excluded')) : null),
      el('div', { class: 'fu-reason' }, t('key.' + item.reason) + ' · ' + item.level_label),
      el('div', { class: 'fu-meta' },
        item.department ? el('span', null, item.department) : null,
        item.staff ? el('span', null, t('common.staff') + ' ' + H.staffLabel(item.staff, item.staff_name)) : null,
        item.case_no ? el('span', null, item.case_no) : null),
      item.state === 'closed' ? null : el('div', { class: 'fu-due' },
        el('span', { class: 'fu-stage' }, t('wo.stage.' + item.stage)),
        item.stage === 'appeal' ? null : ' ' + t('followups.due', { date: item.due }),
        level ? el('span', { class: 'badge warn' }, t('followups.escalation', { level: level })) : null),
      item.assignee ? el('div', { class: 'fu-meta' }, t('followups.assignee', { name: item.assignee })) : null);
  }

  function render(items) {
    var board = H.clear(document.getElementById('board'));
    STATES.forEach(function (state) {
      var mine = items.filter(function (i) { return i.state === state; });
      var column = el('section', { class: 'fu-column', dataset: { state: state } },
        el('h2', null, t('fu.' + state), el('span', { class: 'count' }, mine.length)));
      if (!mine.length) { column.appendChild(el('p', { class: 'no-data' }, t('common.nodata'))); }
      mine.forEach(function (i) { column.appendChild(card(i)); });
      board.appendChild(column);
    });
  }

  /* the steps the state machine and the caller's role allow next, with what each needs */
  function steps(item) {
    switch (item.state) {
      case 'created': return [['assign', 'followups.do.assign', { assignee: true }]];
      case 'assigned': return [['verify', 'followups.do.founded', { founded: true }],
        ['verify', 'followups.do.unfounded', { founded: false }]]
        .concat(mayAppeal ? [['appeal', 'wo.do.appeal', { appeal: true }]] : []);
      case 'appealed': return mayDecide ? [['appeal-decision', 'wo.do.uphold', { upheld: true }],
        ['appeal-decision', 'wo.do.reject', { upheld: false }]] : [];
      case 'verified': return item.founded === false
        ? [['call-back', 'followups.do.call_back', { answer: true }]]
        : [['rectify', 'followups.do.rectify', {}]];
      case 'rectified': return [['call-back', 'followups.do.call_back', { answer: true }]];
      case 'called_back': return [['close', 'followups.do.close', {}]];
      default: return [];
    }
  }

  function act(item, action, extra, fields) {
    var body = { note: fields.note.value };
    if (extra.assignee) { body.assignee = fields.assignee.value; }
    if (extra.founded !== undefined) { body.founded = extra.founded; }
    if (extra.upheld !== undefined) { body.upheld = extra.upheld; }
    if (extra.answer) { body.answer = fields.answer.value; }
    if (extra.appeal) {
      body.ground = fields.ground.value;
      if (fields.evidence.value) { body.evidence_sha256 = fields.evidence.value.trim().toLowerCase(); }
    }
    H.api('/api/v1/followups/' + encodeURIComponent(item.item_id) + '/' + action,
      { method: 'POST', body: body })
      .then(function () { H.notice(''); load(); })
      .catch(function (error) { H.notice(H.failure(error), 'error'); });
  }

  function stageTable(item) {
    return el('table', { class: 'data fu-stages' },
      el('thead', null, el('tr', null, el('th', null, t('wo.stage')), el('th', null, t('wo.stage_due')),
        el('th', null, t('wo.stage_done')), el('th', null, t('wo.stage_state')))),
      el('tbody', null, item.stages.map(function (s) {
        var state = s.overdue ? el('span', { class: 'badge bad' }, t('followups.overdue'))
          : s.on_time === true ? el('span', { class: 'badge good' }, t('wo.on_time'))
            : s.on_time === false ? el('span', { class: 'badge warn' }, t('wo.late')) : '—';
        return el('tr', { dataset: { stage: s.stage }, class: s.stage === item.stage ? 'current' : '' },
          el('td', null, t('wo.stage.' + s.stage)), el('td', null, s.due || '—'),
          el('td', null, s.done_at ? H.fmtTime(s.done_at) : '—'), el('td', null, state));
      })));
  }

  function select(cls, label, values, prefix) {
    return el('select', { class: cls, 'aria-label': label }, values.map(function (v) {
      return el('option', { value: v }, t(prefix + v));
    }));
  }

  function renderDetail(detail) {
    var item = detail.item;
    var box = H.clear(document.getElementById('fu-detail'));
    box.hidden = false;
    box.dataset.item = item.item_id;
    box.appendChild(el('h2', null, H.hallLabel(item.hall, item.hall_name),
      ' · ' + t('window.n', { n: item.window }) + ' · ' +
      t('key.' + item.reason), el('span', { class: 'badge' }, t('fu.' + item.state))));
    box.appendChild(el('dl', { class: 'facts' },
      el('dt', null, t('reviews.evaluated_at')), el('dd', null, H.fmtTime(item.evaluated_at)),
      el('dt', null, t('common.case')), el('dd', null, item.case_no
        ? el('a', { href: '/cases/' + encodeURIComponent(item.case_no) }, item.case_no) : '—'),
      el('dt', null, t('wo.level')), el('dd', null, item.level_label + (item.tag ? ' · ' + item.tag : '')),
      el('dt', null, t('followups.escalation_label')), el('dd', null, item.escalation_level),
      item.appeal_ground ? el('dt', null, t('wo.appeal')) : null,
      item.appeal_ground ? el('dd', { class: 'fu-appeal' }, t('wo.ground.' + item.appeal_ground) +
        (item.appeal_upheld === true ? ' · ' + t('wo.upheld') : item.appeal_upheld === false
          ? ' · ' + t('wo.rejected') : ' · ' + t('wo.pending'))) : null,
      item.answer ? el('dt', null, t('wo.answer')) : null,
      item.answer ? el('dd', { class: 'fu-answer' }, t('wo.answer.' + item.answer)) : null));
    box.appendChild(stageTable(item));
    box.appendChild(el('h3', null, t('followups.history')));
    box.appendChild(el('ol', { class: 'history' }, detail.events.map(function (e) {
      return el('li', { class: 'fu-event', dataset: { kind: e.kind } },
        el('strong', null, t('wo.event.' + e.kind.replace('followup.', ''))),
        e.level ? el('span', { class: 'badge warn' }, t('followups.escalation', { level: e.level })) : null,
        e.assignee ? el('span', null, t('followups.assignee', { name: e.assignee })) : null,
        e.ground ? el('span', null, t('wo.ground.' + e.ground)) : null,
        e.answer ? el('span', null, t('wo.answer.' + e.answer)) : null,
        e.evidence_sha256 ? el('code', { class: 'sha', title: e.evidence_sha256 }, e.evidence_sha256.slice(0, 12)) : null,
        e.note ? el('span', { class: 'note' }, '“' + e.note + '”') : null,
        el('span', { class: 'muted' }, t('reviews.by', { who: e.actor || '—', time: H.fmtTime(e.at) })));
    })));
    var next = steps(item);
    if (!next.length) { return; }
    var need = function (key) { return next.some(function (s) { return s[2][key]; }); };
    var fields = {
      note: el('input', { type: 'text', class: 'note-input', maxlength: '2000',
        placeholder: t('followups.note'), 'aria-label': t('followups.note') }),
      assignee: el('input', { type: 'text', class: 'assignee-input', maxlength: '128',
        placeholder: t('followups.assignee_label'), 'aria-label': t('followups.assignee_label') }),
      answer: select('answer-input', t('wo.answer'), ANSWERS, 'wo.answer.'),
      ground: select('ground-input', t('wo.appeal'), ['misjudged', 'malicious'], 'wo.ground.'),
      evidence: el('input', { type: 'text', class: 'evidence-input', maxlength: '64',
        placeholder: t('wo.evidence'), 'aria-label': t('wo.evidence') })
    };
    box.appendChild(el('div', { class: 'decide' }, need('assignee') ? fields.assignee : null,
      need('answer') ? fields.answer : null, need('appeal') ? fields.ground : null,
      need('appeal') ? fields.evidence : null, fields.note,
      next.map(function (s) {
        return el('button', { type: 'button', class: 'step', dataset: { action: s[0] },
          onclick: function () { act(item, s[0], s[2], fields); } }, t(s[1]));
      })));
  }

  function open(id) {
    selected = id;
    H.api('/api/v1/followups/' + encodeURIComponent(id)).then(renderDetail)
      .catch(function (error) { H.notice(H.failure(error), 'error'); });
    document.querySelectorAll('.fu-card').forEach(function (c) {
      c.classList.toggle('selected', c.dataset.item === id);
    });
  }

  function thisMonth() {
    var now = new Date(Date.now() + 8 * 3600 * 1000);  /* Beijing calendar month */
    return now.toISOString().slice(0, 7);
  }

  function renderStatistic(m) {
    var box = H.clear(document.getElementById('wo-stat'));
    var rate = function (v) { return v === null || v === undefined ? '—' : (v * 100).toFixed(1) + '%'; };
    var row = function (name, value, key) {
      return el('tr', { dataset: { figure: key } }, el('th', null, name), el('td', null, String(value)));
    };
    var counts = function (obj, prefix) {
      return Object.keys(obj).map(function (k) { return row(k, obj[k], prefix + k); });
    };
    box.appendChild(el('h2', null, t('wo.stat.title', { month: m.month }),
      el('a', { class: 'csv-link', href: '/api/v1/followups/statistics.csv?month=' + m.month +
        '&lang=' + H.lang }, t('wo.stat.csv'))));
    box.appendChild(el('table', { class: 'data wo-figures' }, el('tbody', null,
      row(t('wo.stat.opened'), m.opened, 'opened'), row(t('wo.stat.closed'), m.closed, 'closed'),
      row(t('wo.stat.excluded'), m.excluded, 'excluded'),
      counts(m.by_level, 'level:'), counts(m.by_tag, 'tag:'),
      row(t('wo.stat.appeals'), m.appeals_filed + ' / ' + m.appeals_upheld + ' / ' +
        m.appeals_rejected, 'appeals'),
      m.stages.map(function (s) {
        return row(t('wo.stat.on_time', { stage: t('wo.stage.' + s.stage) }),
          rate(s.rate) + ' (' + s.on_time + '/' + (s.on_time + s.late) + ')', 'stage:' + s.stage);
      }),
      row(m.call_back.name, rate(m.call_back.value) + ' (' + m.call_back.numerator + '/' +
        m.call_back.denominator + ')', 'call_back'))));
  }

  function loadStatistic() {
    return H.api('/api/v1/followups/statistics?month=' + thisMonth()).then(renderStatistic)
      .catch(function (error) { H.notice(H.failure(error), 'error'); });
  }

  function load() {
    clearTimeout(timer);
    H.api('/api/v1/followups').then(function (data) {
      render(Array.isArray(data) ? data : (data && data.items) || []);
      H.notice('');
      document.getElementById('status-line').textContent =
        t('common.updated', { time: H.fmtClock() }) + ' · ' +
        t('common.refresh_every', { seconds: EVERY_S });
      if (selected) { open(selected); }
      return loadStatistic();
    }).catch(function (error) {
      render([]);
      H.notice(H.failure(error), error.status === 404 ? 'info' : 'error');
    }).then(function () {
      document.body.dataset.loaded = '1';
      timer = setTimeout(load, EVERY_S * 1000);
    });
  }
  load();
})();
