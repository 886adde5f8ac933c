"""dhis2-core's own MessageConversationControllerTest, translated, run against the emulator.

The Java class is ``dhis-2/dhis-test-web-api/src/test/java/org/hisp/dhis/webapi/controller/
MessageConversationControllerTest.java``: 7 cases on 2.38 to 2.41.2, 20 from 2.41.3 (the
access checks of c31ce96615b, #19139; the same cases on 2.42) and 24 from 2.43 (the Message
mapping of 92494b04526; the same file on master).  Each test here is one Java method, with
its name (pytest collects ``test*``), and runs on the releases whose branch has that method,
so it asserts what that release's own test asserts.  Cases whose only change between branches
is a helper's name (``getSuperuserUid`` up to 2.41, ``getAdminUid`` after) are translated once.
Nothing in them is left out: each runs whole on each of its releases.

The Java harness, in Python, over real HTTP with plain ``requests``:

- ``POST(url, body)``, ``DELETE(url[, body])``, ``GET(url)``: ``/api`` + url; a body goes as
  ``application/json`` with ``'`` read as ``"`` (HttpClientAdapter.perform);
- ``.content(HttpStatus.X)`` wants status X and a JSON body; ``assertWebMessage`` checks the
  WebMessage's httpStatus, httpStatusCode, status and message; ``assertStatus`` checks the
  status and returns the id at the end of ``Location`` (HttpAssertions.getCreatedId);
- the test's superuser is the seeded admin (authority ALL); ``switchToNewUser("ringo")`` is
  dave, who has no authority, group or conversation; ``createUserWithAuth("ringo")`` put alone
  into the group the configuration names as feedback recipients is dave made the only member of
  the seeded feedback group, after the ticket exists, as in the Java test.
"""

from __future__ import annotations

import pytest
import requests

from tests.emulator import ADMIN, DAVE, FEEDBACK_TEAM

RINGO = "dave"  # switchToNewUser("ringo") / createUserWithAuth("ringo")

#: The Java cases that a release's branch has: the first seven everywhere, the access checks
#: from 2.41.3, the Message mapping cases from 2.43.
ACCESS_CHECKS = pytest.mark.dhis2_versions(since="2.41.3")
MESSAGE_MAPPING = pytest.mark.dhis2_versions(since="2.43")


class Harness:
    """The controller test base: a current user and the HTTP verbs, against the emulator."""

    def __init__(self, emulator):
        self.emulator = emulator
        self.session = requests.Session()
        self.switch_to("admin")

    def switch_to(self, username):
        """switchToNewUser / switchContextToUser / switchToAdminUser."""
        user = self.emulator.user(username)
        self.session.auth = (user.username, user.password)
        self.session.cookies.clear()
        return user

    def perform(self, method, url, body=None):
        headers = {}
        data = None
        if body:
            headers["Content-Type"] = "application/json"
            data = body.replace("'", '"').encode("utf-8")
        return self.session.request(
            method,
            self.emulator.url + "/api" + url,
            data=data,
            headers=headers,
            timeout=10,
            allow_redirects=False,
        )

    def GET(self, url):
        return self.perform("GET", url)

    def POST(self, url, body=None):
        return self.perform("POST", url, body)

    def DELETE(self, url, body=None):
        return self.perform("DELETE", url, body)


def content(response, status):
    """HttpResponse.content(HttpStatus): the expected status and a JSON body."""
    assert status == response.status_code, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


def assert_web_message(http_status, http_status_code, status, message, actual):
    assert {"httpStatus", "httpStatusCode", "status"} <= set(actual), actual
    assert http_status_code == actual["httpStatusCode"]
    assert http_status == actual["httpStatus"]
    assert status == actual["status"]
    assert message == actual.get("message")


def assert_status(status, response):
    """HttpAssertions.assertStatus: the status, a valid Location, and the id it ends with."""
    assert status == response.status_code, response.text
    location = response.headers.get("Location")
    if location is None:
        return None
    assert location.startswith(("http://", "https://"))
    return location.rsplit("/", 1)[-1]


@pytest.fixture
def java(emulator):
    bugs = len(emulator.errors)
    harness = Harness(emulator)
    yield harness
    harness.session.close()
    assert bugs == len(emulator.errors), "the emulator hit a bug:\n" + emulator.errors[-1]


def _create(java, subject="Subject", text="Text"):
    body = f"{{'subject':'{subject}','text':'{text}','users':[{{'id':'{ADMIN}'}}]}}"
    return assert_status(201, java.POST("/messageConversations/", body))


def _make_ringo_the_feedback_recipients(emulator):
    """createUserWithAuth("ringo"), a user group A of ringo alone, and the configuration's
    feedback recipients set to A."""
    emulator.groups[FEEDBACK_TEAM].members[:] = [RINGO]


# -- on every release (2.38 to master) ---------------------------------------------------


def testPostJsonObject(java):
    """MessageConversationControllerTest.testPostJsonObject"""
    assert_web_message(
        "Created",
        201,
        "OK",
        "Message conversation created",
        content(
            java.POST(
                "/messageConversations/",
                "{'subject':'Subject','text':'Text','users':[{'id':'" + ADMIN + "'}]}",
            ),
            201,
        ),
    )


def testPostJsonObject_MissingProperty(java):
    """MessageConversationControllerTest.testPostJsonObject_MissingProperty"""
    assert_web_message(
        "Conflict",
        409,
        "ERROR",
        "No recipients selected.",
        content(
            java.POST("/messageConversations/", "{'subject':'Subject','text':'Text','users':[]}"),
            409,
        ),
    )


def testDeleteObject(java):
    """MessageConversationControllerTest.testDeleteObject"""
    uid = _create(java)
    assert_web_message(
        "OK", 200, "OK", None, content(java.DELETE("/messageConversations/" + uid), 200)
    )


def testPostMessageConversationReply(java):
    """MessageConversationControllerTest.testPostMessageConversationReply"""
    uid = _create(java)
    assert_web_message(
        "Created",
        201,
        "OK",
        "Message conversation created",
        content(java.POST("/messageConversations/" + uid, "The message"), 201),
    )


def testPostMessageConversationReply_NoSuchObject(java):
    """MessageConversationControllerTest.testPostMessageConversationReply_NoSuchObject"""
    assert_web_message(
        "Not Found",
        404,
        "ERROR",
        "Message conversation does not exist: xyz",
        content(java.POST("/messageConversations/xyz", "The message"), 404),
    )


def testPostMessageConversationReply_NoSuchAttachment(java):
    """MessageConversationControllerTest.testPostMessageConversationReply_NoSuchAttachment"""
    uid = _create(java)
    assert_web_message(
        "Conflict",
        409,
        "ERROR",
        "Attachment 'xyz' not found.",
        content(java.POST("/messageConversations/" + uid + "?attachments=xyz", "The message"), 409),
    )


def testPostMessageConversationFeedback(java):
    """MessageConversationControllerTest.testPostMessageConversationFeedback"""
    assert_web_message(
        "Created",
        201,
        "OK",
        "Feedback created",
        content(java.POST("/messageConversations/feedback?subject=test", "The message"), 201),
    )


# -- from 2.41.3: the access checks ------------------------------------------------------


@ACCESS_CHECKS
def testChangeFeedbackMessage(java, emulator):
    """MessageConversationControllerTest.testChangeFeedbackMessage: "Change feedback message
    when in the recipient group"."""
    uid = assert_status(
        201, java.POST("/messageConversations/feedback?subject=test", "The message")
    )
    _make_ringo_the_feedback_recipients(emulator)
    ringo = java.switch_to(RINGO)
    content(java.POST(f"/messageConversations/read?user={ringo.uid}", f"['{uid}']"), 200)


@ACCESS_CHECKS
def testChangeFeedbackMessageWithoutPermission(java):
    """MessageConversationControllerTest.testChangeFeedbackMessageWithoutPermission: "Change
    feedback message when not in the recipient group"."""
    uid = assert_status(
        201, java.POST("/messageConversations/feedback?subject=test", "The message")
    )
    ringo = java.switch_to(RINGO)
    content(java.POST(f"/messageConversations/read?user={ringo.uid}", f"['{uid}']"), 403)


@ACCESS_CHECKS
def testPostToConversationWithoutPermission(java):
    """MessageConversationControllerTest.testPostToConversationWithoutPermission"""
    uid = _create(java)
    java.switch_to(RINGO)
    assert_web_message(
        "Forbidden",
        403,
        "ERROR",
        "Not authorized to send messages to this conversation.",
        content(java.POST(f"/messageConversations/{uid}", "{'text':'text'}"), 403),
    )


_RINGO_AS_RECIPIENT = f"{{'users':[{{'id':'{DAVE}'}}],'userGroups':[],'organisationUnits':[]}}"


@ACCESS_CHECKS
def testAddRecipientWithoutPermission(java):
    """MessageConversationControllerTest.testAddRecipientWithoutPermission"""
    uid = _create(java)
    java.switch_to(RINGO)
    assert_web_message(
        "Forbidden",
        403,
        "ERROR",
        "Not authorized to change recipients in this conversation.",
        content(java.POST(f"/messageConversations/{uid}/recipients", _RINGO_AS_RECIPIENT), 403),
    )


@ACCESS_CHECKS
def testChangePriorityWithoutPermission(java):
    """MessageConversationControllerTest.testChangePriorityWithoutPermission"""
    uid = _create(java)
    java.switch_to(RINGO)
    assert_web_message(
        "Forbidden",
        403,
        "ERROR",
        "Not authorized to change priority in this conversation.",
        content(
            java.POST(
                f"/messageConversations/{uid}/priority?messageConversationPriority=HIGH",
                _RINGO_AS_RECIPIENT,
            ),
            403,
        ),
    )


@ACCESS_CHECKS
def testChangeStatusWithoutPermission(java):
    """MessageConversationControllerTest.testChangeStatusWithoutPermission"""
    uid = _create(java)
    java.switch_to(RINGO)
    assert_web_message(
        "Forbidden",
        403,
        "ERROR",
        "Not authorized to change status in this conversation.",
        content(
            java.POST(
                f"/messageConversations/{uid}/status?messageConversationStatus=SOLVED",
                _RINGO_AS_RECIPIENT,
            ),
            403,
        ),
    )


@ACCESS_CHECKS
def testAssignUsersWithoutPermission(java):
    """MessageConversationControllerTest.testAssignUsersWithoutPermission"""
    uid = _create(java)
    ringo = java.switch_to(RINGO)
    assert_web_message(
        "Forbidden",
        403,
        "ERROR",
        "Not authorized to assign a user to this conversation.",
        content(
            java.POST(
                f"/messageConversations/{uid}/assign?userId={ringo.uid}", _RINGO_AS_RECIPIENT
            ),
            403,
        ),
    )


@ACCESS_CHECKS
def testDeleteAssignUsersWithoutPermission(java):
    """MessageConversationControllerTest.testDeleteAssignUsersWithoutPermission"""
    uid = _create(java)
    java.switch_to(RINGO)
    assert_web_message(
        "Forbidden",
        403,
        "ERROR",
        "Not authorized to remove the assigned user to this conversation.",
        content(java.DELETE(f"/messageConversations/{uid}/assign", _RINGO_AS_RECIPIENT), 403),
    )


@ACCESS_CHECKS
def testChangeFollowupWithoutPermission(java):
    """MessageConversationControllerTest.testChangeFollowupWithoutPermission"""
    uid = _create(java)
    ringo = java.switch_to(RINGO)
    assert_web_message(
        "Forbidden",
        403,
        "ERROR",
        "Not authorized to change followups in this conversation.",
        content(
            java.POST(f"/messageConversations/followup?userUid={ringo.uid}", f"['{uid}']"), 403
        ),
    )


@ACCESS_CHECKS
def testChangeUnFollowupWithoutPermission(java):
    """MessageConversationControllerTest.testChangeUnFollowupWithoutPermission"""
    uid = _create(java)
    ringo = java.switch_to(RINGO)
    assert_web_message(
        "Forbidden",
        403,
        "ERROR",
        "Not authorized to change unfollowups in this conversation.",
        content(
            java.POST(f"/messageConversations/unfollowup?userUid={ringo.uid}", f"['{uid}']"), 403
        ),
    )


@ACCESS_CHECKS
def testRemoveUserWithoutPermission(java):
    """MessageConversationControllerTest.testRemoveUserWithoutPermission"""
    uid = _create(java)
    java.switch_to(RINGO)
    assert_web_message(
        "Forbidden",
        403,
        "ERROR",
        "Not authorized to remove assigned users to this conversation.",
        content(java.DELETE(f"/messageConversations/{uid}/{ADMIN}"), 403),
    )


@ACCESS_CHECKS
def testRemoveUsersBatchWithoutPermission(java):
    """MessageConversationControllerTest.testRemoveUsersBatchWithoutPermission"""
    uid = _create(java)
    java.switch_to(RINGO)
    assert_web_message(
        "Forbidden",
        403,
        "ERROR",
        "Not authorized to remove assigned users to this conversation.",
        content(java.DELETE(f"/messageConversations?mc={uid}&user={ADMIN}"), 403),
    )


@ACCESS_CHECKS
def testChangeReadStatusWithoutPermission(java):
    """MessageConversationControllerTest.testChangeReadStatusWithoutPermission"""
    uid = _create(java)
    ringo = java.switch_to(RINGO)
    assert_web_message(
        "Forbidden",
        403,
        "ERROR",
        "Not authorized to change read property of this conversation.",
        content(java.POST(f"/messageConversations/read?user={ringo.uid}", f"['{uid}']"), 403),
    )


# -- from 2.43: the Message mapping ------------------------------------------------------


@MESSAGE_MAPPING
def testGetConversationWithMessageFields(java):
    """MessageConversationControllerTest.testGetConversationWithMessageFields"""
    uid = _create(java, "Test Subject", "Hello World")
    conversation = content(
        java.GET(f"/messageConversations/{uid}?fields=messages[text,sender,internal,lastUpdated]"),
        200,
    )
    messages = conversation["messages"]
    assert messages, "Conversation should have messages"
    message = messages[0]
    assert "Hello World" == message["text"]
    assert message.get("lastUpdated") is not None, "lastUpdated should be mapped"
    assert message["internal"] is False, "internal should default to false"
    assert message["sender"]["id"] is not None, "sender should be mapped"


@MESSAGE_MAPPING
def testReplyMessageSenderMapping(java):
    """MessageConversationControllerTest.testReplyMessageSenderMapping"""
    uid = _create(java, text="Original")
    assert_status(201, java.POST("/messageConversations/" + uid, "Reply message"))
    conversation = content(
        java.GET(f"/messageConversations/{uid}?fields=messages[text,sender[id]]"), 200
    )
    messages = conversation["messages"]
    assert 2 == len(messages), "Should have original + reply"
    for i, msg in enumerate(messages):
        assert msg["sender"]["id"] is not None, f"Message {i} should have sender mapped"


@MESSAGE_MAPPING
def testInternalMessageFlag(java, emulator):
    """MessageConversationControllerTest.testInternalMessageFlag"""
    uid = assert_status(
        201, java.POST("/messageConversations/feedback?subject=test", "Feedback message")
    )
    _make_ringo_the_feedback_recipients(emulator)
    java.switch_to(RINGO)
    assert_status(201, java.POST(f"/messageConversations/{uid}?internal=true", "Internal reply"))
    java.switch_to("admin")
    conversation = content(
        java.GET(f"/messageConversations/{uid}?fields=messages[text,internal]"), 200
    )
    assert any(m.get("internal") is True for m in conversation["messages"]), (
        "Should have at least one internal message"
    )


@MESSAGE_MAPPING
def testMultipleRepliesMessageMapping(java):
    """MessageConversationControllerTest.testMultipleRepliesMessageMapping"""
    uid = _create(java, text="First")
    assert_status(201, java.POST("/messageConversations/" + uid, "Second"))
    assert_status(201, java.POST("/messageConversations/" + uid, "Third"))
    conversation = content(
        java.GET(f"/messageConversations/{uid}?fields=messages[text,sender,lastUpdated]"), 200
    )
    messages = conversation["messages"]
    assert 3 == len(messages), "Should have 3 messages"
    for i, msg in enumerate(messages):
        assert msg.get("text") is not None, f"Message {i} should have text"
        assert msg.get("lastUpdated") is not None, f"Message {i} should have lastUpdated"
        assert msg.get("sender") is not None, f"Message {i} should have sender"
