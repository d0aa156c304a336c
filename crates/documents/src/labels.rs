//! Bilingual labels of the certificate and the slip, and English names of recorded enum values.
//!
//! Labels are English and Hindi; field values are printed as recorded, untranslated.

use domain::events::{Gender, PhotoIdType};

/// One label in English and Hindi.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    /// English text.
    pub en: &'static str,
    /// Hindi text in Devanagari.
    pub hi: &'static str,
}

const fn label(en: &'static str, hi: &'static str) -> Label {
    Label { en, hi }
}

pub const CERTIFICATE_TITLE: Label =
    label("Certificate for COVID-19 Vaccination", "कोविड-19 टीकाकरण प्रमाणपत्र");
pub const ISSUED_BY: Label = label("Issued by", "जारीकर्ता");
pub const BENEFICIARY_DETAILS: Label = label("Beneficiary Details", "लाभार्थी का विवरण");
pub const BENEFICIARY_NAME: Label = label("Beneficiary Name", "लाभार्थी का नाम");
pub const YEAR_OF_BIRTH: Label = label("Year of Birth", "जन्म का वर्ष");
pub const GENDER: Label = label("Gender", "लिंग");
pub const PHOTO_ID: Label = label("ID Verified", "सत्यापित पहचान पत्र");
pub const REFERENCE_ID: Label = label("Beneficiary Reference ID", "लाभार्थी संदर्भ आईडी");
pub const VACCINATION_DETAILS: Label = label("Vaccination Details", "टीकाकरण का विवरण");
pub const VACCINE: Label = label("Vaccine Name", "टीके का नाम");
pub const MANUFACTURER: Label = label("Manufacturer", "निर्माता");
pub const DOSE: Label = label("Dose Number", "खुराक संख्या");
pub const DOSE_DATE: Label = label("Date of Dose", "खुराक की तारीख");
pub const VACCINATED_AT: Label = label("Vaccinated at", "टीकाकरण केंद्र");
pub const BATCH: Label = label("Batch Number", "बैच संख्या");
pub const VACCINATOR: Label = label("Vaccinator ID", "टीकाकर्ता आईडी");
pub const CERTIFICATE_ID: Label = label("Certificate ID", "प्रमाणपत्र आईडी");
pub const KEY_ID: Label = label("Signing Key ID", "हस्ताक्षर कुंजी आईडी");
pub const ISSUED_AT: Label = label("Issued At", "जारी करने का समय");
pub const HOW_TO_VERIFY: Label = label("How to verify", "सत्यापन कैसे करें");
pub const VERIFY_ONLINE: Label = label(
    "Scan the QR code, or upload this PDF or a photo of the QR code, at",
    "क्यूआर कोड स्कैन करें, या यह पीडीएफ अथवा क्यूआर कोड की फ़ोटो यहाँ अपलोड करें:",
);
pub const VERIFY_OFFLINE: Label = label(
    "Offline, with the issuer's trust list:",
    "ऑफ़लाइन, जारीकर्ता की ट्रस्ट सूची के साथ:",
);

pub const SLIP_TITLE: Label = label("Appointment Acknowledgement Slip", "अपॉइंटमेंट पावती पर्ची");
pub const APPOINTMENT_ID: Label = label("Appointment ID", "अपॉइंटमेंट आईडी");
pub const APPOINTMENT_DATE: Label = label("Appointment Date", "अपॉइंटमेंट की तारीख");
pub const CENTRE: Label = label("Vaccination Centre", "टीकाकरण केंद्र");
pub const ADDRESS: Label = label("Address", "पता");
pub const SECURITY_CODE: Label = label("Security Code", "सुरक्षा कोड");
pub const CODE_NOTE: Label = label(
    "Tell this code to the verifier at the centre only after your photo ID has been checked. \
     Do not share it with anyone else.",
    "केंद्र पर अपने फ़ोटो पहचान पत्र की जाँच के बाद ही यह कोड सत्यापनकर्ता को बताएँ। \
     इसे किसी और को न बताएँ।",
);
pub const BRING_ID: Label = label(
    "Bring the photo ID named above.",
    "ऊपर लिखा फ़ोटो पहचान पत्र साथ लाएँ।",
);
pub const SLIP_DISPUTE: Label = label(
    "If you receive an SMS that a dose was recorded and you were not vaccinated, raise a dispute.",
    "यदि आपको खुराक दर्ज होने का एसएमएस मिले और आपका टीकाकरण नहीं हुआ हो, तो शिकायत दर्ज करें।",
);

/// Returns the English name of a gender as recorded.
pub fn gender_name(gender: Gender) -> &'static str {
    match gender {
        Gender::Female => "Female",
        Gender::Male => "Male",
        Gender::Other => "Other",
    }
}

/// Returns the English name of a photo-ID type as recorded.
pub fn photo_id_name(kind: PhotoIdType) -> &'static str {
    match kind {
        PhotoIdType::Aadhaar => "Aadhaar",
        PhotoIdType::Pan => "PAN",
        PhotoIdType::Passport => "Passport",
        PhotoIdType::DrivingLicence => "Driving Licence",
        PhotoIdType::VoterId => "Voter ID",
        PhotoIdType::DisabilityId => "Disability ID",
        PhotoIdType::PensionPassbook => "Pension Passbook",
    }
}
