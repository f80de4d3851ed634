"""Every notification's words, Chinese first: one place to read and change them.

A message's payload carries ``event`` and ``params``; e-mail and webhooks get the rendered
text, the SMS gateway gets the provider's template id (``outbox.sms.templates``) and the same
params, since Chinese SMS providers only send templates registered with them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Template:
    subject: str
    text: str


TEMPLATES: dict[str, Template] = {
    "ladder.yellow_light": Template(
        "【黄灯预警】办件临近办理时限",
        "办件 {case_no}（{item_name}）已亮黄灯，将于 {deadline} 到期，请及时办理。"
        "部门：{department}。",
    ),
    "ladder.red_light": Template(
        "【红灯警告】办件已到办理时限",
        "办件 {case_no}（{item_name}）已亮红灯，时限 {deadline} 已到，请立即办结。"
        "部门：{department}。",
    ),
    "ladder.yellow_card": Template(
        "【黄牌】办件已超时",
        "办件 {case_no}（{item_name}）已超时 {days_over} 个工作日，记黄牌一次。"
        "部门：{department}。",
    ),
    "ladder.red_card": Template(
        "【红牌】办件严重超时",
        "办件 {case_no}（{item_name}）已超时 {days_over} 个工作日，记红牌一次，"
        "请部门负责人督办。部门：{department}。",
    ),
    "workorder.assigned": Template(
        "【差评工单】请及时核实",
        "差评工单 {item_id}（{hall} 大厅 {window} 号窗口，原因：{tag}）已分派给您，"
        "请于 {due} 前完成{stage}。",
    ),
    "workorder.escalated.leader": Template(
        "【差评工单逾期】请部门负责人督办",
        "差评工单 {item_id}（{hall} 大厅 {window} 号窗口，部门：{department}）"
        "{stage}环节已超过期限 {due}，升级督办（{level} 级），请督促办理。",
    ),
    "workorder.escalated.supervisor": Template(
        "【差评工单严重逾期】提请监察室督办",
        "差评工单 {item_id}（{hall} 大厅 {window} 号窗口，部门：{department}）"
        "{stage}环节超过期限 {due} 仍未完成，升级督办（{level} 级）。",
    ),
    "applicant.accepted": Template(
        "您的办件已受理",
        "您申请的{item_name}已受理，办件编号 {case_no}，承诺 {days} 个工作日内办结。",
    ),
    "applicant.completed": Template(
        "您的办件已办结", "您申请的{item_name}（办件编号 {case_no}）已办结，欢迎评价。"
    ),
    "applicant.overdue": Template(
        "办件延误致歉",
        "您申请的{item_name}（办件编号 {case_no}）未能在承诺时限内办结，"
        "我们深表歉意，正在加紧办理。",
    ),
    "complaint.replied": Template(
        "您的投诉已答复",
        "您的投诉（编号 {complaint_no}）已答复：{reply}。"
        "如有疑问，可凭投诉编号和查询码在网上查询。",
    ),
    "complaint.overdue": Template(
        "【投诉逾期】请尽快受理答复",
        "投诉 {complaint_no} 已超过办理期限（答复期限 {deadline}），承办部门：{department}。",
    ),
    "complaint.escalated": Template(
        "【投诉督办】投诉严重逾期",
        "投诉 {complaint_no} 答复期限 {deadline} 已过多个工作日仍未答复，承办部门：{department}，"
        "请督办。",
    ),
}


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "—"


def render(event: str, params: dict[str, Any]) -> Template:
    """The subject and text of ``event`` with ``params`` filled in (a missing one shows —)."""
    template = TEMPLATES[event]
    values = _Blank(params)
    return Template(template.subject.format_map(values), template.text.format_map(values))


__all__ = ["TEMPLATES", "Template", "render"]
