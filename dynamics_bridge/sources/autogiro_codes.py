"""Bankgirot's Autogiro codes and their Swedish texts (Bg Autogiro Teknisk manual, 2014, ch. 8).

Kept as data so a union can read (and its members' messages can quote) what Bankgirot said.
"""

from __future__ import annotations

#: TK82/TK32 status in position 80 of the payment specification.
PAYMENT_STATUS = {
    "1": "Täckning saknas",
    "2": "Koppling till Autogiro saknas (kontot avslutat eller annan orsak)",
    "9": "Förnyad täckningskontroll: dras igen om mottagaren har tjänsten",
}

#: TK77 refund reason (positions 78-79).
REFUND_REASON = {
    "01": "Betalaren har inte lämnat medgivande till betalningsmottagaren",
    "02": "Medgivandet var återkallat",
    "03": "Beloppet var inte angivet i medgivandet och överstiger vad betalaren kunde förvänta sig",
}

#: TK73 information codes (what happened).
MANDATE_INFO = {
    "03": "Makulering initierad av betalningsmottagaren",
    "04": "Nytt medgivande initierat av betalningsmottagaren",
    "05": "Byte av betalarnummer",
    "10": "Makulerat: betalningsmottagarens bankgironummer avslutat",
    "42": "Svar på kontoförfrågan från betalarens bank",
    "43": "Makulerat: kontoförfrågan besvarades inte",
    "44": "Makulerat: betalarens bankgironummer avslutat",
    "46": "Makulerat av betalaren eller betalarens bank",
    "93": "Makulerat (utgången kod)",
}

#: TK73 comment codes (the result).
MANDATE_COMMENT = {
    "02": "Makulerat på initiativ av betalaren eller betalarens bank",
    "03": "Kontotypen är inte godkänd för Autogiro",
    "04": "Medgivandet finns inte i registret",
    "05": "Felaktiga kontouppgifter eller personuppgifter",
    "07": "Borttaget: kontoförfrågan besvarades inte",
    "09": "Betalarens bankgironummer finns inte",
    "10": "Medgivandet är redan registrerat eller under förfrågan",
    "20": "Felaktigt person- eller organisationsnummer",
    "21": "Felaktigt betalarnummer",
    "23": "Felaktigt kontonummer",
    "29": "Betalningsmottagarens bankgironummer är felaktigt",
    "30": "Betalningsmottagarens bankgironummer är avregistrerat",
    "32": "Nytt medgivande",
    "33": "Makulerat",
    "98": "Makulerat: betalarens bankgironummer avslutat",
}

#: Comment codes that mean the mandate now exists, and those that mean it is gone.
MANDATE_CREATED = {"32"}
MANDATE_REMOVED = {"02", "07", "33", "98"}

#: Information codes after which the mandate is gone whatever the comment (payee's bankgiro
#: closed: "10/* → cancelled" in payments.md §1.3, "Suggested CRM mapping").
MANDATE_REMOVED_INFO = {"10"}

#: (information, comment) pairs that mean the payee's OWN request failed (payments.md §1.3,
#: "Suggested CRM mapping": 04 or 05 with 09/10/20/21/23/29/30, or 03 with 04/21/29/30 → "our
#: request failed (mandate state unchanged, raise a task)"). They say nothing about the
#: member's mandate, so they produce no event; the parser reports them instead.
MANDATE_REQUEST_FAILED_PAIRS = {
    *(
        (info, comment)
        for info in ("04", "05")
        for comment in ("09", "10", "20", "21", "23", "29", "30")
    ),
    *(("03", comment) for comment in ("04", "21", "29", "30")),
}

#: Rejected-payments report comment codes.
REJECTION = {
    "01": "Medgivande saknas",
    "02": "Kontot är inte godkänt eller är avslutat",
    "03": "Kontot är inte godkänt eller är avslutat",
    "06": "Felaktig periodkod",
    "07": "Felaktigt antal självförnyande uppdrag",
    "08": "Beloppet är inte numeriskt",
    "09": "Utbetalningar är inte tillåtna",
    "10": "Bankgironumret finns inte hos Bankgirot",
    "12": "Felaktigt betalningsdatum",
    "13": "Betalningsdatumet har passerat",
    "15": "Mottagarens bankgironummer skiljer sig från öppningsposten",
    "24": "Beloppet överstiger maxbeloppet",
}

#: Cancellation/change report comment codes; 12, 14 and 18 mean it was done.
AMENDMENT = {
    "01": "Felaktigt betalningsdatum",
    "02": "Felaktigt betalarnummer",
    "04": "Felaktig betalningskod",
    "05": "Felaktigt belopp",
    "06": "Felaktigt nytt betalningsdatum",
    "10": "Betalningsmottagarens bankgironummer har fel kontrollsiffra",
    "11": "Betalningsmottagarens bankgironummer saknas",
    "12": "Makulerad",
    "13": "Betalningen hittades inte, inget utfört",
    "14": "Datum ändrat",
    "15": "Inte ändrat: självförnyande uppdrag",
    "18": "Datum ändrat",
}
AMENDMENT_DONE_CANCELLED = {"12"}
AMENDMENT_DONE_MOVED = {"14", "18"}

#: Cancellation/change report transaction codes (positions 1-2): who or what caused it.
AMENDMENT_CAUSE = {
    "03": "Makulerad: medgivandet har tagits bort",
    "11": "Makulerad av betalaren eller betalarens bank",
    "21": "Makulerad: betalningsmottagarens avtal har upphört",
    "22": "Makulerad (utgången kod)",
    "23": "Makulering av alla betalningar för en betalare",
    "24": "Makulering av en betalares betalningar på ett datum",
    "25": "Makulering av en betalning",
    "26": "Alla betalningar flyttade till nytt datum",
    "27": "Betalningar på ett datum flyttade",
    "28": "En betalares betalningar på ett datum flyttade",
    "29": "En betalning flyttad",
}

#: BgMax TK21 deduction codes (position 71).
DEDUCTION = {
    "0": "Helt avdrag, ingen rest",
    "1": "Delavdrag, rest finns",
    "2": "Slutligt avdrag efter delavdrag",
    "3": "Slutligt avdrag efter delavdrag",
}
